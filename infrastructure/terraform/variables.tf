variable "project_id" {
  description = "GCP project that hosts the platform."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid GCP project id (6-30 lower-case letters, digits and hyphens)."
  }
}

variable "region" {
  description = "Region for regional resources."
  type        = string
  default     = "us-central1"
}

variable "zone" {
  description = "Zone for the GPU instances; it must offer the chosen accelerator."
  type        = string
  default     = "us-central1-a"
}

variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "stream-platform"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name must be 3-21 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "network" {
  description = "VPC network the instances join."
  type        = string
  default     = "default"
}

variable "machine_type" {
  description = "Machine type of each instance (must match the accelerator, e.g. g2-standard-8 for L4, a3-highgpu-1g for H100)."
  type        = string
  default     = "g2-standard-8"
}

variable "gpu_type" {
  description = "Guest accelerator type."
  type        = string
  default     = "nvidia-l4"
  validation {
    condition     = contains(["nvidia-l4", "nvidia-tesla-a100", "nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-tesla-t4"], var.gpu_type)
    error_message = "gpu_type must be one of nvidia-l4, nvidia-tesla-a100, nvidia-a100-80gb, nvidia-h100-80gb, nvidia-tesla-t4."
  }
}

variable "gpu_count" {
  description = "GPUs per instance."
  type        = number
  default     = 1
  validation {
    condition     = contains([1, 2, 4, 8], var.gpu_count)
    error_message = "gpu_count must be 1, 2, 4 or 8."
  }
}

variable "instance_count" {
  description = "GPU VMs to create (named NAME-01, NAME-02, …), each with its own service account."
  type        = number
  default     = 1
  validation {
    condition     = var.instance_count >= 0 && var.instance_count <= 64
    error_message = "instance_count must be between 0 and 64."
  }
}

variable "boot_image" {
  description = "Boot image with the NVIDIA driver (Deep Learning VM images ship it)."
  type        = string
  default     = "projects/deeplearning-platform-release/global/images/family/common-cu124-debian-11"
}

variable "boot_disk_gb" {
  description = "Boot disk size in GB."
  type        = number
  default     = 100
  validation {
    condition     = var.boot_disk_gb >= 50
    error_message = "boot_disk_gb must be at least 50."
  }
}

variable "container_image" {
  description = "The platform image (Artifact Registry path and tag)."
  type        = string
}

variable "allowed_rtmp_cidrs" {
  description = "Sources allowed to publish RTMP (port 1935). 0.0.0.0/0 is allowed here only if you mean it: keys still protect publishing."
  type        = list(string)
  validation {
    condition     = length(var.allowed_rtmp_cidrs) > 0 && alltrue([for c in var.allowed_rtmp_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_rtmp_cidrs must be a non-empty list of CIDR ranges."
  }
}

variable "allowed_console_cidrs" {
  description = "Sources allowed to reach the console (8501) and the API (8080) directly, besides IAP. Never 0.0.0.0/0."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.allowed_console_cidrs : can(cidrhost(c, 0)) && !startswith(c, "0.0.0.0/")])
    error_message = "allowed_console_cidrs must be CIDR ranges and must not contain 0.0.0.0/0; use IAP or the HTTPS load balancer instead."
  }
}

variable "secret_ids" {
  description = "Secret Manager secrets the platform reads at runtime (values are added out of band, never through Terraform)."
  type        = list(string)
  default     = ["database-url", "admin-password", "stream-key-pepper", "streams-callback-token", "kafka-sasl-password"]
}

variable "enable_https_lb" {
  description = "Put the console behind a global HTTPS load balancer with a Google-managed certificate."
  type        = bool
  default     = false
}

variable "console_domain" {
  description = "Domain for the console's managed certificate (required when enable_https_lb)."
  type        = string
  default     = ""
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = {}
}
