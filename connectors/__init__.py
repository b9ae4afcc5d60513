"""I/O at the edges: Kafka clients, the embedded broker and file output."""
