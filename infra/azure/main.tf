# embedpool workers on Azure VM Scale Sets: one scale set per worker size, a TLS-only Azure Managed Redis
# (clustered, noeviction as BullMQ requires, AOF persistence), a storage account the workers reach with their
# managed identity, and autoscale settings driven by the workers' own metrics, published to Azure Monitor as
# custom metrics by a Telegraf sidecar on each VM (see infra/README.md, "How the metric reaches Azure Monitor").
#
# The API is not deployed here: it runs on AKS (infra/k8s/api.yaml, in a VNet listed in redis_dns_vnet_ids)
# or any container host that reaches this Redis, with the same REDIS_URL, BLOB_ACCOUNT_URL and CALLBACK_SECRET
# (terraform outputs redis_url, blob_endpoint, callback_secret; see infra/README.md).

data "azurerm_client_config" "current" {}

resource "random_string" "suffix" {
  length  = 6
  lower   = true
  upper   = false
  numeric = true
  special = false
}

locals {
  name = "${var.prefix}-${random_string.suffix.result}"
  # Globally unique, alphanumeric, <= 24 characters.
  compact_name = "${var.prefix}${random_string.suffix.result}"

  # Custom metrics namespace the Telegraf sidecar publishes under (namespace_prefix + name_override).
  metric_namespace = "embedpool/metrics"

  # Scale set resource IDs, built from names so the cloud-init of a scale set can name its own ID (Telegraf
  # publishes against it) without a dependency cycle.
  vmss_ids = {
    for pool, _ in var.worker_pools :
    pool => "/subscriptions/${var.subscription_id}/resourceGroups/${azurerm_resource_group.main.name}/providers/Microsoft.Compute/virtualMachineScaleSets/${local.name}-${pool}"
  }

  # Docker stop timeout: longer than the worker's drain (SHUTDOWN_TIMEOUT_MS) so it exits on its own.
  stop_timeout_s = ceil(var.shutdown_timeout_ms / 1000) + 15
}

resource "azurerm_resource_group" "main" {
  name     = "rg-${local.name}"
  location = var.location
  tags     = var.tags
}

resource "azurerm_user_assigned_identity" "worker" {
  name                = "id-${local.name}-worker"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags
}

resource "azurerm_role_assignment" "worker_acr_pull" {
  count                = var.acr_id == "" ? 0 : 1
  scope                = var.acr_id
  role_definition_name = "AcrPull"
  principal_id         = azurerm_user_assigned_identity.worker.principal_id
  principal_type       = "ServicePrincipal"
}
