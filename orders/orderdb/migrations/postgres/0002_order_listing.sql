-- GET /orders lists newest first by (placed_unix_ms, order_id) — see
-- orders/list.go. Each index below hands the rows of one filter
-- combination over in that order, so a page is an index range read with no
-- sort, stopping after the page's rows (a B-tree is read backwards for the
-- descending order):
--   no filter, since             orders_by_placed
--   status (+ since)             orders_by_status  (also the deadline sweep:
--                                status = 'PENDING' ORDER BY placed_unix_ms)
--   customer (+ status, since)   orders_by_customer; with a status too the
--                                status is checked on the customer's rows, a
--                                handful, rather than paying a fourth index
--                                on every write.
CREATE INDEX orders_by_placed ON orders (placed_unix_ms, order_id);
CREATE INDEX orders_by_status ON orders (status, placed_unix_ms, order_id);
CREATE INDEX orders_by_customer ON orders (customer_id, placed_unix_ms, order_id);
-- orders_by_status serves everything the status-only index did.
DROP INDEX orders_status;
