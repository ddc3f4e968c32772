-- Whether orders.confirmed arrived for the captured payment: a confirmed
-- order's payment is never refunded, whatever an orders.cancelled says.
ALTER TABLE payments ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;
