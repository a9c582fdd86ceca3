"""Study code: how shipped models were made. Never imported by ``stream/`` or the serving ``engines/`` modules."""
