output "resource_group" {
  value = azurerm_resource_group.main.name
}

output "redis_hostname" {
  value = azurerm_redis_cache.main.hostname
}

output "redis_ssl_port" {
  description = "TLS port (6380); REDIS_URL is rediss://:<key>@<hostname>:6380, stored in Key Vault as redis-url."
  value       = azurerm_redis_cache.main.ssl_port
}

output "redis_url" {
  description = "REDIS_URL for other deployments (the AKS Secret): rediss:// with the access key."
  value       = local.redis_url
  sensitive   = true
}

output "key_vault_uri" {
  value = azurerm_key_vault.main.vault_uri
}

output "storage_account_name" {
  value = azurerm_storage_account.main.name
}

output "blob_endpoint" {
  value = azurerm_storage_account.main.primary_blob_endpoint
}

output "worker_identity_client_id" {
  value = azurerm_user_assigned_identity.worker.client_id
}

output "worker_nat_ip" {
  description = "Egress IP of the workers (allowed through the Redis firewall)."
  value       = azurerm_public_ip.nat.ip_address
}

output "scale_set_ids" {
  value = { for pool, vmss in azurerm_linux_virtual_machine_scale_set.worker : pool => vmss.id }
}

output "metric_namespace" {
  description = "Azure Monitor custom-metrics namespace of the scaling metrics on each scale set."
  value       = local.metric_namespace
}
