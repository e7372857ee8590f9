-- The node (of a fleet on one store) that served each invocation.
ALTER TABLE invocations ADD COLUMN node TEXT;
