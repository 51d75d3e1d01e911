# One VM Scale Set per worker size. Each VM runs one worker container (systemd + Docker, set up by cloud-init)
# under the scale set's user-assigned managed identity, plus a Telegraf container that publishes the worker's
# scaling metrics to Azure Monitor.

resource "azurerm_linux_virtual_machine_scale_set" "worker" {
  for_each = var.worker_pools

  name                = "${local.name}-${each.key}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  sku                 = each.value.vm_size
  instances           = each.value.default
  admin_username      = var.admin_username
  upgrade_mode        = "Manual"
  overprovision       = false
  tags                = merge(var.tags, { pool = each.key })

  # Autoscale owns the instance count after creation.
  lifecycle {
    ignore_changes = [instances]
  }

  admin_ssh_key {
    username   = var.admin_username
    public_key = var.admin_ssh_public_key
  }
  disable_password_authentication = true

  source_image_reference {
    publisher = "Canonical"
    offer     = "ubuntu-24_04-lts"
    sku       = "server"
    version   = "latest"
  }

  os_disk {
    caching              = "ReadWrite"
    storage_account_type = "Premium_LRS"
    disk_size_gb         = 64
  }

  network_interface {
    name                      = "nic"
    primary                   = true
    network_security_group_id = azurerm_network_security_group.workers.id

    ip_configuration {
      name      = "internal"
      primary   = true
      subnet_id = azurerm_subnet.workers.id
    }
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.worker.id]
  }

  # Scale-in and maintenance: the VM gets a Terminate scheduled event this long before it goes away; the
  # cloud-init watcher stops the worker (SIGTERM, drain up to SHUTDOWN_TIMEOUT_MS) and acknowledges it.
  termination_notification {
    enabled = true
    timeout = "PT5M"
  }

  # A VM whose worker stops answering /healthz is replaced.
  automatic_instance_repair {
    enabled      = true
    grace_period = "PT30M"
  }

  extension {
    name                       = "HealthExtension"
    publisher                  = "Microsoft.ManagedServices"
    type                       = "ApplicationHealthLinux"
    type_handler_version       = "2.0"
    auto_upgrade_minor_version = true
    settings = jsonencode({
      protocol          = "http"
      port              = 9464
      requestPath       = "/healthz"
      intervalInSeconds = 15
      numberOfProbes    = 2
      gracePeriod       = 900
    })
  }

  dynamic "extension" {
    for_each = each.value.gpu ? [1] : []
    content {
      name                       = "NvidiaGpuDriverLinux"
      publisher                  = "Microsoft.HpcCompute"
      type                       = "NvidiaGpuDriverLinux"
      type_handler_version       = "1.6"
      auto_upgrade_minor_version = true
    }
  }

  custom_data = base64encode(templatefile("${path.module}/cloud-init/worker.yaml.tftpl", {
    pool                = each.key
    worker_image        = each.value.image
    telegraf_image      = var.telegraf_image
    gpu                 = each.value.gpu ? "1" : "0"
    execution_provider  = each.value.gpu ? "cuda" : "cpu"
    model_variant       = each.value.gpu ? "fp16" : "fp32"
    max_batch_size      = each.value.max_batch_size
    queue_prefix        = var.queue_prefix
    shutdown_timeout_ms = var.shutdown_timeout_ms
    stop_timeout_s      = local.stop_timeout_s
    systemd_timeout_s   = local.stop_timeout_s + 15
    identity_client_id  = azurerm_user_assigned_identity.worker.client_id
    blob_account_url    = azurerm_storage_account.main.primary_blob_endpoint
    redis_auth          = var.redis_auth
    autoscale_pools     = join(",", [for name, p in var.worker_pools : "${name}:${p.per_worker_images_per_s}"])
    key_vault_uri       = azurerm_key_vault.main.vault_uri
    acr_login_server    = var.acr_login_server
    location            = azurerm_resource_group.main.location
    vmss_resource_id    = local.vmss_ids[each.key]
    metric_namespace    = local.metric_namespace
  }))

  depends_on = [
    azurerm_subnet_nat_gateway_association.workers,
    azurerm_key_vault_secret.redis_url,
    azurerm_key_vault_secret.callback_secret,
    azurerm_private_endpoint.redis,
    azurerm_private_dns_zone_virtual_network_link.redis,
    azurerm_managed_redis_access_policy_assignment.worker,
    azurerm_role_assignment.worker_kv_secrets,
  ]
}

# Telegraf publishes custom metrics against the scale set: the identity needs Monitoring Metrics Publisher on it.
resource "azurerm_role_assignment" "worker_metrics_publisher" {
  for_each             = var.worker_pools
  scope                = azurerm_linux_virtual_machine_scale_set.worker[each.key].id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = azurerm_user_assigned_identity.worker.principal_id
  principal_type       = "ServicePrincipal"
}
