"""The real-time layer: 5-minute windowed billing and tower health, Spark Structured Streaming."""
