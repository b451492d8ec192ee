# Optional global HTTPS load balancer in front of the console (enable_https_lb = true).

resource "google_compute_global_address" "console" {
  count = var.enable_https_lb ? 1 : 0
  name  = "${var.name}-console"
}

resource "google_compute_managed_ssl_certificate" "console" {
  count = var.enable_https_lb ? 1 : 0
  name  = "${var.name}-console"
  managed {
    domains = [var.console_domain]
  }
  lifecycle {
    precondition {
      condition     = var.console_domain != ""
      error_message = "console_domain is required when enable_https_lb is true."
    }
  }
}

resource "google_compute_backend_service" "console" {
  count                 = var.enable_https_lb ? 1 : 0
  name                  = "${var.name}-console"
  protocol              = "HTTP"
  port_name             = "console"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  timeout_sec           = 3600 # Streamlit keeps a websocket open
  health_checks         = [google_compute_health_check.console.id]
  backend {
    group = google_compute_instance_group.gpu.self_link
  }
}

resource "google_compute_url_map" "console" {
  count           = var.enable_https_lb ? 1 : 0
  name            = "${var.name}-console"
  default_service = google_compute_backend_service.console[0].id
}

resource "google_compute_target_https_proxy" "console" {
  count            = var.enable_https_lb ? 1 : 0
  name             = "${var.name}-console"
  url_map          = google_compute_url_map.console[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.console[0].id]
}

resource "google_compute_global_forwarding_rule" "console" {
  count                 = var.enable_https_lb ? 1 : 0
  name                  = "${var.name}-console"
  target                = google_compute_target_https_proxy.console[0].id
  ip_address            = google_compute_global_address.console[0].address
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}
