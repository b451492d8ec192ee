output "service_accounts" {
  description = "Each VM's own service account, by VM name."
  value       = { for name, account in google_service_account.vm : name => account.email }
}

output "instances" {
  description = "The GPU VMs by name, with their zone."
  value       = { for name, vm in google_compute_instance.gpu : name => vm.zone }
}

output "instance_group" {
  description = "The unmanaged instance group of the GPU VMs (the load balancer's back end)."
  value       = google_compute_instance_group.gpu.self_link
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
