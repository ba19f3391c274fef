"""Synthesis: tables, the streaming engine, control sources and rendering."""
