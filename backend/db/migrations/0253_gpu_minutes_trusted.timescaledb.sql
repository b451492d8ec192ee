-- What readers of gpu_minutes_1h (migration 0252, backend/costs/spend.py) may use: computed hours with no write
-- since, and none that the 1-minute aggregate's retention policy may have dropped already (a chunk goes once its end
-- is `drop_after` old; the policy runs on its own).
CREATE VIEW gpu_minutes_1h_trusted AS
SELECT d.hour, d.idle_threshold
FROM gpu_minutes_1h_done d
CROSS JOIN (SELECT max(now() - (j.config->>'drop_after')::interval) AS kept_from
            FROM timescaledb_information.jobs j
            WHERE j.proc_name = 'policy_retention' AND j.hypertable_name = 'gpu_metrics_1m') r
WHERE NOT EXISTS (SELECT 1 FROM gpu_minutes_1h_dirty x WHERE x.hour = d.hour)
  AND (r.kept_from IS NULL OR d.hour >= r.kept_from);
