"""The engine server: a queue of runs on one device, connections authenticated before anything is
read, listeners that fail closed."""
