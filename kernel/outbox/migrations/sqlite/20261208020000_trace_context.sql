-- The W3C traceparent of the request that wrote the event, so that the relay's delivery can
-- link to that request's span. Events written outside a traced request have none, and so do
-- those written before this column.
ALTER TABLE basalt_outbox ADD COLUMN traceparent TEXT;
