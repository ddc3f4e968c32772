-- Cancellation and its compensations: whether orders.cancelled arrived,
-- the provider's reason for a decline, and the money the provider took
-- and gave back (minor units of the payment's currency), which the saga's
-- "captured − refunded" invariant reads.
ALTER TABLE payments ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN decline_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE payments ADD COLUMN captured_amount INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN refunded_amount INTEGER NOT NULL DEFAULT 0;
-- Before this migration a captured payment's amount was its capture.
UPDATE payments SET captured_amount = amount WHERE status = 'CAPTURED';
