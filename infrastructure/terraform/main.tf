locals {
  labels = merge({ platform = var.name, managed-by = "terraform" }, var.labels)
  # Google's IAP TCP-forwarding range: SSH and the console reach instances through IAP only.
  iap_range = "35.235.240.0/20"
  # Google front ends and health checkers (load balancer back ends and health checks).
  google_health_check_ranges = ["130.211.0.0/22", "35.191.0.0/16"]
  network_tag                = "${var.name}-vm"
  instance_names             = [for i in range(var.instance_count) : format("%s-%02d", var.name, i + 1)]
  runtime_roles              = ["roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/artifactregistry.reader"]
}

# --- identity: one service account per VM, with the least it needs ------------------------------------------
# Each VM has its own account, so the auto-shutdown agent's stop permission covers its own instance and no other.
resource "google_service_account" "vm" {
  for_each     = toset(local.instance_names)
  account_id   = each.value
  display_name = "Stream Platform VM ${each.value}"
}

resource "google_project_iam_member" "runtime" {
  for_each = {
    for pair in setproduct(local.instance_names, local.runtime_roles) : "${pair[0]} ${pair[1]}" => {
      instance = pair[0]
      role     = pair[1]
    }
  }
  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.vm[each.value.instance].email}"
}

# The auto-shutdown agent stops its own instance: a custom role with get+stop, bound per VM with a condition that
# names that VM exactly.
resource "google_project_iam_custom_role" "self_stop" {
  role_id     = replace("${var.name}_self_stop", "-", "_")
  title       = "Stream Platform self stop"
  description = "Lets the auto-shutdown agent read and stop its own instance."
  permissions = ["compute.instances.get", "compute.instances.stop"]
}

resource "google_project_iam_member" "self_stop" {
  for_each = toset(local.instance_names)
  project  = var.project_id
  role     = google_project_iam_custom_role.self_stop.id
  member   = "serviceAccount:${google_service_account.vm[each.value].email}"
  condition {
    title      = "own-instance-only"
    expression = "resource.name == \"projects/${var.project_id}/zones/${var.zone}/instances/${each.value}\""
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

# Access to each secret, never `list`: startup.sh reads the ids named in the instance metadata.
resource "google_secret_manager_secret_iam_member" "runtime_accessor" {
  for_each = {
    for pair in setproduct(local.instance_names, var.secret_ids) : "${pair[0]} ${pair[1]}" => {
      instance = pair[0]
      secret   = pair[1]
    }
  }
  secret_id = google_secret_manager_secret.runtime[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.vm[each.value.instance].email}"
}

# --- compute: GPU instances ----------------------------------------------------------------------------------
# Plain instances, not a managed instance group: a group repairs instances stopped outside it, which would undo
# every auto-shutdown, and all its instances share one service account.
resource "google_compute_instance" "gpu" {
  for_each     = toset(local.instance_names)
  name         = each.value
  zone         = var.zone
  machine_type = var.machine_type
  tags         = [local.network_tag]
  labels       = local.labels

  boot_disk {
    auto_delete = true
    initialize_params {
      image = var.boot_image
      size  = var.boot_disk_gb
      type  = "pd-balanced"
    }
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
    email  = google_service_account.vm[each.value].email
    scopes = ["cloud-platform"]
  }

  metadata = {
    enable-oslogin         = "TRUE"
    startup-script         = file("${path.module}/../scripts/startup.sh")
    platform-image         = var.container_image
    platform-secret-prefix = "${var.name}-"
    platform-secret-ids    = join(",", var.secret_ids)
  }

  # The agent stops idle VMs; an apply must not start them again.
  lifecycle {
    ignore_changes = [desired_status]
  }
}

resource "google_compute_health_check" "console" {
  name = "${var.name}-console"
  http_health_check {
    port         = 8501
    request_path = "/_stcore/health"
  }
}

# The load balancer's back end: the VMs, with the console's named port.
resource "google_compute_instance_group" "gpu" {
  name      = "${var.name}-vms"
  zone      = var.zone
  instances = [for vm in google_compute_instance.gpu : vm.self_link]

  named_port {
    name = "console"
    port = 8501
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
    ports    = ["8501"]
  }
}

# The API is for people and tools, never behind the load balancer: IAP and the allowed sources only.
resource "google_compute_firewall" "api" {
  name          = "${var.name}-allow-api"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = concat([local.iap_range], var.allowed_console_cidrs)
  target_tags   = [local.network_tag]
  allow {
    protocol = "tcp"
    ports    = ["8080"]
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
