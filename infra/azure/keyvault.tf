# The secrets of the workers live in Key Vault, not in the VMs' custom data: REDIS_URL (it holds the Redis
# access key) and CALLBACK_SECRET. Each VM reads them at container start with its managed identity (Key Vault
# Secrets User).
resource "azurerm_key_vault" "main" {
  name                       = "kv-${local.compact_name}"
  location                   = azurerm_resource_group.main.location
  resource_group_name        = azurerm_resource_group.main.name
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  rbac_authorization_enabled = true
  soft_delete_retention_days = 7
  purge_protection_enabled   = false
  tags                       = var.tags
}

# Whoever runs Terraform writes the secret.
resource "azurerm_role_assignment" "deployer_kv_secrets" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_role_assignment" "worker_kv_secrets" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.worker.principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_key_vault_secret" "redis_url" {
  name         = "redis-url"
  value        = local.redis_url
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"

  depends_on = [azurerm_role_assignment.deployer_kv_secrets]
}

# Signs callback deliveries. Generated here so the VM workers and any other deployment of the same queue (the
# API on AKS: `terraform output -raw callback_secret`) share one secret.
resource "random_password" "callback_secret" {
  length  = 48
  special = false
}

resource "azurerm_key_vault_secret" "callback_secret" {
  name         = "callback-secret"
  value        = random_password.callback_secret.result
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"

  depends_on = [azurerm_role_assignment.deployer_kv_secrets]
}
