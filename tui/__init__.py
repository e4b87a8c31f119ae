"""The Textual app: watch and steer autoresearch runs. Imports the engine, never the reverse."""
