output "resource_group" {
  value = azurerm_resource_group.main.name
}

output "redis_hostname" {
  value = azurerm_managed_redis.main.hostname
}

output "redis_port" {
  description = "TLS port of Azure Managed Redis (10000); REDIS_URL is rediss://[:<key>@]<hostname>:10000, stored in Key Vault as redis-url."
  value       = local.redis_port
}

output "redis_url" {
  description = "REDIS_URL for other deployments (the AKS Secret): rediss:// with the access key (redis_auth = \"key\") or without (\"entra\"). Use it with REDIS_CLUSTER=true."
  value       = local.redis_url
  sensitive   = true
}

output "redis_access_key" {
  description = "The access key alone (KEDA's redis trigger); empty with redis_auth = \"entra\"."
  value       = var.redis_auth == "key" ? azurerm_managed_redis.main.default_database[0].primary_access_key : ""
  sensitive   = true
}

output "callback_secret" {
  description = "CALLBACK_SECRET of this deployment (Key Vault callback-secret): every process that sends or checks callbacks uses the same one."
  value       = random_password.callback_secret.result
  sensitive   = true
}

output "key_vault_uri" {
  value = azurerm_key_vault.main.vault_uri
}

output "storage_account_name" {
  value = azurerm_storage_account.main.name
}

output "blob_endpoint" {
  description = "BLOB_ACCOUNT_URL: the storage account the workers write blob outputs and read ingestions from."
  value       = azurerm_storage_account.main.primary_blob_endpoint
}

output "worker_identity_client_id" {
  description = "AZURE_CLIENT_ID: the user-assigned identity holding Storage Blob Data Contributor (and Redis access with Entra)."
  value       = azurerm_user_assigned_identity.worker.client_id
}

output "worker_nat_ip" {
  description = "Egress IP of the workers (to allow them through firewalls of image sources and callback receivers)."
  value       = azurerm_public_ip.nat.ip_address
}

output "scale_set_ids" {
  value = { for pool, vmss in azurerm_linux_virtual_machine_scale_set.worker : pool => vmss.id }
}

output "metric_namespace" {
  description = "Azure Monitor custom-metrics namespace of the scaling metrics on each scale set."
  value       = local.metric_namespace
}
