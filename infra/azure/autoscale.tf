# Autoscale of each scale set from the custom metrics its workers publish (namespace embedpool/metrics on the
# scale set resource, via Telegraf; see infra/README.md).
#
# Azure autoscale compares a metric with a fixed threshold; it cannot set the capacity to a metric's value.
# divide_by_instance_count turns the pool-wide numbers into per-instance ones, which makes the thresholds
# capacity-relative:
#   embedpool_desired_workers / instances > 1        <=> the pool is smaller than the backlog needs
#   embedpool_backlog_images / instances > rate x drain  (the same formula, from the raw backlog)
#   embedpool_queue_jobs{state=waiting} / instances > 32   (raw BullMQ queue depth: the last fallback)
# Every worker reports the same value (desired workers for each pool of AUTOSCALE_POOLS, dimension `pool`:
# a rule reads its own scale set's pool), so statistic "Max" de-duplicates the instances.

resource "azurerm_monitor_autoscale_setting" "worker" {
  for_each = var.worker_pools

  name                = "autoscale-${local.name}-${each.key}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  target_resource_id  = azurerm_linux_virtual_machine_scale_set.worker[each.key].id
  enabled             = true
  tags                = var.tags

  profile {
    name = "backlog"

    capacity {
      minimum = each.value.min
      default = each.value.default
      maximum = each.value.max
    }

    # Behind: grow by half.
    rule {
      metric_trigger {
        metric_name              = "embedpool_desired_workers"
        metric_namespace         = local.metric_namespace
        metric_resource_id       = azurerm_linux_virtual_machine_scale_set.worker[each.key].id
        time_grain               = "PT1M"
        statistic                = "Max"
        time_window              = "PT5M"
        time_aggregation         = "Maximum"
        operator                 = "GreaterThan"
        threshold                = 1
        divide_by_instance_count = true

        dimensions {
          name     = "pool"
          operator = "Equals"
          values   = [each.key]
        }
      }
      scale_action {
        direction = "Increase"
        type      = "PercentChangeCount"
        value     = "50"
        cooldown  = "PT3M"
      }
    }

    # Far behind (more than twice the capacity needed): double.
    rule {
      metric_trigger {
        metric_name              = "embedpool_desired_workers"
        metric_namespace         = local.metric_namespace
        metric_resource_id       = azurerm_linux_virtual_machine_scale_set.worker[each.key].id
        time_grain               = "PT1M"
        statistic                = "Max"
        time_window              = "PT5M"
        time_aggregation         = "Maximum"
        operator                 = "GreaterThan"
        threshold                = 2
        divide_by_instance_count = true

        dimensions {
          name     = "pool"
          operator = "Equals"
          values   = [each.key]
        }
      }
      scale_action {
        direction = "Increase"
        type      = "PercentChangeCount"
        value     = "100"
        cooldown  = "PT3M"
      }
    }

    # The same formula from the raw backlog, should embedpool_desired_workers be missing.
    rule {
      metric_trigger {
        metric_name              = "embedpool_backlog_images"
        metric_namespace         = local.metric_namespace
        metric_resource_id       = azurerm_linux_virtual_machine_scale_set.worker[each.key].id
        time_grain               = "PT1M"
        statistic                = "Max"
        time_window              = "PT5M"
        time_aggregation         = "Maximum"
        operator                 = "GreaterThan"
        threshold                = each.value.per_worker_images_per_s * each.value.target_drain_s
        divide_by_instance_count = true
      }
      scale_action {
        direction = "Increase"
        type      = "PercentChangeCount"
        value     = "50"
        cooldown  = "PT3M"
      }
    }

    # Raw queue depth: jobs waiting in BullMQ's wait list per instance.
    rule {
      metric_trigger {
        metric_name              = "embedpool_queue_jobs"
        metric_namespace         = local.metric_namespace
        metric_resource_id       = azurerm_linux_virtual_machine_scale_set.worker[each.key].id
        time_grain               = "PT1M"
        statistic                = "Max"
        time_window              = "PT5M"
        time_aggregation         = "Maximum"
        operator                 = "GreaterThan"
        threshold                = 32
        divide_by_instance_count = true

        dimensions {
          name     = "state"
          operator = "Equals"
          values   = ["waiting"]
        }
      }
      scale_action {
        direction = "Increase"
        type      = "ChangeCount"
        value     = "1"
        cooldown  = "PT3M"
      }
    }

    # Ahead for ten minutes (fewer than 70% of the instances needed): shrink by one. Scale-in waits longer
    # than scale-out, and a VM leaving drains its jobs first (termination notification).
    rule {
      metric_trigger {
        metric_name              = "embedpool_desired_workers"
        metric_namespace         = local.metric_namespace
        metric_resource_id       = azurerm_linux_virtual_machine_scale_set.worker[each.key].id
        time_grain               = "PT1M"
        statistic                = "Max"
        time_window              = "PT10M"
        time_aggregation         = "Average"
        operator                 = "LessThan"
        threshold                = 0.7
        divide_by_instance_count = true

        dimensions {
          name     = "pool"
          operator = "Equals"
          values   = [each.key]
        }
      }
      scale_action {
        direction = "Decrease"
        type      = "ChangeCount"
        value     = "1"
        cooldown  = "PT5M"
      }
    }
  }
}
