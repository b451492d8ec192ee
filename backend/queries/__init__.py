"""Read models for the console and the API: one function per view, over the telemetry storage contract only
(`gpus`, `gpu_metrics`, `gpu_metrics_1m`, `gpu_metrics_1h`, `token_usage`), never a profile's internals."""
