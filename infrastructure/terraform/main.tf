locals {
  labels = merge({ platform = var.name, managed-by = "terraform" }, var.labels)
  # Google's IAP TCP-forwarding range: SSH and the console reach instances through IAP only.
  iap_range = "35.235.240.0/20"
  # Google front ends and health checkers (load balancer back ends and health checks).
  google_health_check_ranges = ["130.211.0.0/22", "35.191.0.0/16"]
  network_tag                = "${var.name}-vm"
}

# --- identity: a service account with the least it needs -------------------------------------------------
resource "google_service_account" "vm" {
  account_id   = "${var.name}-vm"
  display_name = "Stream Platform VM"
}

resource "google_project_iam_member" "log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.vm.email}"
}

resource "google_project_iam_member" "metric_writer" {
  project = var.project_id
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.vm.email}"
}

resource "google_project_iam_member" "image_reader" {
  project = var.project_id
  role    = "roles/artifactregistry.reader"
  member  = "serviceAccount:${google_service_account.vm.email}"
}

# The auto-shutdown agent stops its own instance: a custom role with get+stop, limited by condition to the
# platform's instances.
resource "google_project_iam_custom_role" "self_stop" {
  role_id     = replace("${var.name}_self_stop", "-", "_")
  title       = "Stream Platform self stop"
  description = "Lets the auto-shutdown agent read and stop platform instances."
  permissions = ["compute.instances.get", "compute.instances.stop"]
}

resource "google_project_iam_member" "self_stop" {
  project = var.project_id
  role    = google_project_iam_custom_role.self_stop.id
  member  = "serviceAccount:${google_service_account.vm.email}"
  condition {
    title      = "platform-instances-only"
    expression = "resource.name.startsWith(\"projects/${var.project_id}/zones/${var.zone}/instances/${var.name}-\")"
  }
}

# --- secrets: containers only, values never pass through Terraform state -----------------------------------
resource "google_secret_manager_secret" "runtime" {
  for_each  = toset(var.secret_ids)
  secret_id = "${var.name}-${each.value}"
  labels    = local.labels
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "runtime_accessor" {
  for_each  = google_secret_manager_secret.runtime
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.vm.email}"
}

# --- compute: GPU instance template and managed instance group -----------------------------------------
resource "google_compute_instance_template" "gpu" {
  name_prefix  = "${var.name}-"
  machine_type = var.machine_type
  tags         = [local.network_tag]
  labels       = local.labels

  disk {
    source_image = var.boot_image
    disk_size_gb = var.boot_disk_gb
    disk_type    = "pd-balanced"
    boot         = true
    auto_delete  = true
  }

  network_interface {
    network = var.network
    access_config {}
  }

  guest_accelerator {
    type  = var.gpu_type
    count = var.gpu_count
  }

  scheduling {
    on_host_maintenance = "TERMINATE"
    automatic_restart   = true
  }

  shielded_instance_config {
    enable_secure_boot          = false # the NVIDIA driver modules are not signed on every image
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  service_account {
    email  = google_service_account.vm.email
    scopes = ["cloud-platform"]
  }

  metadata = {
    enable-oslogin         = "TRUE"
    startup-script         = file("${path.module}/../scripts/startup.sh")
    platform-image         = var.container_image
    platform-secret-prefix = "${var.name}-"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_health_check" "console" {
  name = "${var.name}-console"
  http_health_check {
    port         = 8501
    request_path = "/_stcore/health"
  }
}

resource "google_compute_instance_group_manager" "gpu" {
  name               = "${var.name}-mig"
  zone               = var.zone
  base_instance_name = var.name
  target_size        = var.instance_count

  version {
    instance_template = google_compute_instance_template.gpu.id
  }

  named_port {
    name = "console"
    port = 8501
  }

  auto_healing_policies {
    health_check      = google_compute_health_check.console.id
    initial_delay_sec = 600
  }
}

# --- firewall: RTMP from allowed sources, console/API from allowed sources or IAP, SSH via IAP only ------
resource "google_compute_firewall" "rtmp" {
  name          = "${var.name}-allow-rtmp"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = var.allowed_rtmp_cidrs
  target_tags   = [local.network_tag]
  allow {
    protocol = "tcp"
    ports    = ["1935"]
  }
}

resource "google_compute_firewall" "console" {
  name          = "${var.name}-allow-console"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = concat([local.iap_range], var.allowed_console_cidrs, var.enable_https_lb ? local.google_health_check_ranges : [])
  target_tags   = [local.network_tag]
  allow {
    protocol = "tcp"
    ports    = ["8501", "8080"]
  }
}

resource "google_compute_firewall" "ssh_iap" {
  name          = "${var.name}-allow-ssh-iap"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = [local.iap_range]
  target_tags   = [local.network_tag]
  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

resource "google_compute_firewall" "health_checks" {
  name          = "${var.name}-allow-health-checks"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = local.google_health_check_ranges
  target_tags   = [local.network_tag]
  allow {
    protocol = "tcp"
    ports    = ["8501"]
  }
}
