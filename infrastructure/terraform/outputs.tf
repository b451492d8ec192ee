output "service_account_email" {
  description = "The VMs' service account."
  value       = google_service_account.vm.email
}

output "instance_group" {
  description = "The managed instance group of GPU VMs."
  value       = google_compute_instance_group_manager.gpu.instance_group
}

output "secret_ids" {
  description = "Secret Manager secrets to fill with `gcloud secrets versions add` (values never go through Terraform)."
  value       = [for s in google_secret_manager_secret.runtime : s.secret_id]
}

output "console_url" {
  description = "The console's HTTPS address when the load balancer is enabled."
  value       = var.enable_https_lb ? "https://${var.console_domain}" : null
}

output "console_ip" {
  description = "The load balancer's address: point console_domain's DNS A record here."
  value       = var.enable_https_lb ? google_compute_global_address.console[0].address : null
}
