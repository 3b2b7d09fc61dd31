"""Serving: ``mmsafe serve-model`` puts any target behind an OpenAI-compatible endpoint (``app``), with the wire
types in ``openai_types`` and fault injection for tests in ``faults``."""
