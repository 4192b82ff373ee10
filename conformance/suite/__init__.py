"""The conformance tests users run against backends: ``pytest --pyargs conformance.suite -k <impl>``."""
