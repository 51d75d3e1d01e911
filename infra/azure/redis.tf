# The queue's Redis: Azure Managed Redis (Azure Cache for Redis takes no new instances; it retires in 2028).
# - TLS only (client_protocol Encrypted) on port 10000; clients use rediss://<host>:10000.
# - OSS cluster policy: the database is sharded and clients speak the Redis Cluster protocol, so the processes
#   run with REDIS_CLUSTER=true (REDIS_URL is then the seed list) and every key carries a {hash tag} so a
#   queue's keys share one slot (BullMQ's Lua scripts touch several keys at once).
# - NoEviction: BullMQ requires it (an evicted job key corrupts the queue).
# - AOF persistence written every second: accepted async jobs and ingestions live here, so a failure of the
#   Redis node loses at most the last second of acknowledged writes (docs/hardening.md).
# - Reached over a private endpoint in the VNet only (Managed Redis has no IP firewall); no public access.
# - Authentication: access keys (REDIS_URL carries the key; stored in Key Vault) or, with redis_auth =
#   "entra", Microsoft Entra ID tokens of the workers' managed identity (REDIS_AUTH=entra, no key anywhere).
resource "azurerm_managed_redis" "main" {
  name                      = "redis-${local.name}"
  location                  = azurerm_resource_group.main.location
  resource_group_name       = azurerm_resource_group.main.name
  sku_name                  = var.redis_sku_name
  high_availability_enabled = true
  public_network_access     = "Disabled"
  tags                      = var.tags

  default_database {
    client_protocol                               = "Encrypted"
    clustering_policy                             = "OSSCluster"
    eviction_policy                               = "NoEviction"
    access_keys_authentication_enabled            = var.redis_auth == "key"
    persistence_append_only_file_backup_frequency = "1s"
  }
}

# Entra ID authentication: the workers' identity gets the database's built-in data access policy.
resource "azurerm_managed_redis_access_policy_assignment" "worker" {
  count            = var.redis_auth == "entra" ? 1 : 0
  managed_redis_id = azurerm_managed_redis.main.id
  object_id        = azurerm_user_assigned_identity.worker.principal_id
}

# Private endpoint in its own subnet, and the private DNS zone that makes the Redis host name resolve to it
# inside this VNet and any VNet listed in redis_dns_vnet_ids (e.g. a peered AKS VNet running the API).
resource "azurerm_subnet" "private_endpoints" {
  name                 = "snet-private-endpoints"
  resource_group_name  = azurerm_resource_group.main.name
  virtual_network_name = azurerm_virtual_network.main.name
  address_prefixes     = [cidrsubnet(var.address_space, 8, 1)]
}

resource "azurerm_private_dns_zone" "redis" {
  name                = "privatelink.redis.azure.net"
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "redis" {
  name                  = "redis-workers"
  resource_group_name   = azurerm_resource_group.main.name
  private_dns_zone_name = azurerm_private_dns_zone.redis.name
  virtual_network_id    = azurerm_virtual_network.main.id
  tags                  = var.tags
}

# Keyed by the given IDs (known at plan time, unlike the VNet's own ID).
resource "azurerm_private_dns_zone_virtual_network_link" "redis_extra" {
  for_each              = toset(var.redis_dns_vnet_ids)
  name                  = "redis-${substr(sha1(each.value), 0, 8)}"
  resource_group_name   = azurerm_resource_group.main.name
  private_dns_zone_name = azurerm_private_dns_zone.redis.name
  virtual_network_id    = each.value
  tags                  = var.tags
}

resource "azurerm_private_endpoint" "redis" {
  name                = "pe-${local.name}-redis"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  subnet_id           = azurerm_subnet.private_endpoints.id
  tags                = var.tags

  private_service_connection {
    name                           = "redis"
    private_connection_resource_id = azurerm_managed_redis.main.id
    subresource_names              = ["redisEnterprise"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "redis"
    private_dns_zone_ids = [azurerm_private_dns_zone.redis.id]
  }
}

locals {
  # Managed Redis serves TLS on 10000.
  redis_port = 10000
  # What the processes read as REDIS_URL: TLS (rediss://) on 10000; with access keys the key is the password,
  # with Entra ID the process fetches a token for its managed identity instead (REDIS_AUTH=entra).
  redis_url = (
    var.redis_auth == "key"
    ? "rediss://:${azurerm_managed_redis.main.default_database[0].primary_access_key}@${azurerm_managed_redis.main.hostname}:${local.redis_port}"
    : "rediss://${azurerm_managed_redis.main.hostname}:${local.redis_port}"
  )
}
