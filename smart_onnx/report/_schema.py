"""The version written into every report's JSON."""

# Raised when a key of a report's JSON changes meaning or goes away (adding a key keeps it).
SCHEMA_VERSION = 1
