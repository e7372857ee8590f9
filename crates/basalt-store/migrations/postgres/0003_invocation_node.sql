-- The node of the fleet that served each invocation.
ALTER TABLE invocations ADD COLUMN node TEXT;
