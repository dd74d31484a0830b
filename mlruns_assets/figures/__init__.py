"""What a researcher looks at: the leaderboard as Markdown, each run's curves as PNG (matplotlib,
Agg), the self-contained HTML report; everything read from the results database alone."""
