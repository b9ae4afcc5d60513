"""The event contract: pydantic v2 models for every input event and output record.

Pure data, no I/O. Integration teams build their ERP/WMS/TMS/carrier feeds against these
models; the JSON Schemas and the AsyncAPI document under ``docs/contract/`` are generated
from them.
"""
