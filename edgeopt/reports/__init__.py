"""What a run leaves for people and tools: the run document, terminal/Markdown tables, HTML, JUnit XML,
CSV, and MLflow tracking."""
