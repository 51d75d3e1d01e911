# The queue's Redis. BullMQ requires maxmemory-policy noeviction (an evicted job key corrupts the queue).
# TLS only: the non-TLS port 6379 stays closed, clients use rediss://<host>:6380.
resource "azurerm_redis_cache" "main" {
  name                          = "redis-${local.name}"
  location                      = azurerm_resource_group.main.location
  resource_group_name           = azurerm_resource_group.main.name
  sku_name                      = var.redis_sku.name
  family                        = var.redis_sku.family
  capacity                      = var.redis_sku.capacity
  redis_version                 = "6"
  non_ssl_port_enabled          = false
  minimum_tls_version           = "1.2"
  public_network_access_enabled = true
  tags                          = var.tags

  redis_configuration {
    maxmemory_policy = "noeviction"
  }
}

# Only the workers' NAT IP (and any extra, e.g. AKS egress) get through the firewall; the access key and
# TLS still apply.
resource "azurerm_redis_firewall_rule" "workers_nat" {
  name                = "workersnat"
  redis_cache_name    = azurerm_redis_cache.main.name
  resource_group_name = azurerm_resource_group.main.name
  start_ip            = azurerm_public_ip.nat.ip_address
  end_ip              = azurerm_public_ip.nat.ip_address
}

resource "azurerm_redis_firewall_rule" "extra" {
  for_each            = toset(var.redis_allowed_ips)
  name                = "extra${replace(each.value, ".", "")}"
  redis_cache_name    = azurerm_redis_cache.main.name
  resource_group_name = azurerm_resource_group.main.name
  start_ip            = each.value
  end_ip              = each.value
}

locals {
  # What the processes read as REDIS_URL: TLS (rediss://) on the SSL port, the access key as password.
  redis_url = "rediss://:${azurerm_redis_cache.main.primary_access_key}@${azurerm_redis_cache.main.hostname}:${azurerm_redis_cache.main.ssl_port}"
}
