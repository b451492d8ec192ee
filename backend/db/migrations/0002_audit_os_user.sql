-- The OS account of the process that wrote each audit row, next to the actor. A CLI row's actor is whatever
-- `--as` said (or `system`); this says who actually ran the command. NULL on rows written before it existed.
ALTER TABLE audit_log ADD COLUMN os_user text;
