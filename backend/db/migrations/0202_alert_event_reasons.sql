-- Each alert event says why it happened (the lifecycle's reason: thresholds, hold times, reopen window).
ALTER TABLE alert_events ADD COLUMN reason text NOT NULL DEFAULT '';
