-- What readers of gpu_minutes_1h (migration 0252, backend/costs/spend.py) may use: computed hours with no write
-- since. (The timescaledb profile also leaves out hours that the 1-minute aggregate's retention policy may have
-- dropped.)
CREATE VIEW gpu_minutes_1h_trusted AS
SELECT d.hour, d.idle_threshold
FROM gpu_minutes_1h_done d
WHERE NOT EXISTS (SELECT 1 FROM gpu_minutes_1h_dirty x WHERE x.hour = d.hour);
