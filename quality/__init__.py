"""Data quality: in-stream gates over the input feeds and expectation suites over landed tables."""
