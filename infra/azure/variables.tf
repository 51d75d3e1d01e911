variable "subscription_id" {
  description = "Azure subscription to deploy into."
  type        = string
}

variable "location" {
  description = "Azure region (it must offer Azure Monitor custom metrics and the chosen VM sizes)."
  type        = string
  default     = "westeurope"
}

variable "prefix" {
  description = "Short lowercase name prefix for every resource."
  type        = string
  default     = "embedpool"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,11}$", var.prefix))
    error_message = "prefix: 3-12 lowercase letters and digits, starting with a letter."
  }
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = { app = "embedpool" }
}

variable "address_space" {
  description = "Virtual network address space; the workers' subnet is its first /24."
  type        = string
  default     = "10.42.0.0/16"
}

variable "admin_username" {
  description = "Admin user of the worker VMs (SSH key only; no inbound rule opens SSH)."
  type        = string
  default     = "embedpool"
}

variable "admin_ssh_public_key" {
  description = "SSH public key for admin_username."
  type        = string
}

variable "acr_id" {
  description = "Resource ID of the Azure Container Registry holding the images; the workers get AcrPull on it. Empty: images are public."
  type        = string
  default     = ""
}

variable "acr_login_server" {
  description = "Login server of that registry (myregistry.azurecr.io); empty when the images are public."
  type        = string
  default     = ""
}

variable "redis_sku_name" {
  description = "Azure Managed Redis SKU (Balanced_B1 and up; Memory_/Compute_ tiers for larger queues). High availability is on."
  type        = string
  default     = "Balanced_B1"
}

variable "redis_auth" {
  description = "How the processes authenticate to Redis: \"key\" (access key in REDIS_URL, stored in Key Vault) or \"entra\" (Microsoft Entra ID tokens of the managed identity, REDIS_AUTH=entra; access keys disabled)."
  type        = string
  default     = "key"

  validation {
    condition     = contains(["key", "entra"], var.redis_auth)
    error_message = "redis_auth: \"key\" or \"entra\"."
  }
}

variable "redis_dns_vnet_ids" {
  description = "Extra virtual networks (peered with this one, e.g. the AKS cluster's running the API) linked to the Redis private DNS zone, so they resolve its private endpoint."
  type        = list(string)
  default     = []
}

variable "queue_prefix" {
  description = "QUEUE_PREFIX of this deployment (Redis key prefix; one deployment per prefix)."
  type        = string
  default     = "embedpool"
}

variable "shutdown_timeout_ms" {
  description = "SHUTDOWN_TIMEOUT_MS: the worker's drain time on SIGTERM. The VM's stop timeout and the scale-in termination notice are longer."
  type        = number
  default     = 30000
}

variable "worker_pools" {
  description = <<-EOT
    One VM Scale Set per worker size. image: the worker image (worker-cpu or worker-gpu); gpu: install the
    NVIDIA driver and container toolkit and run with --gpus all; per_worker_images_per_s and target_drain_s
    document the sizing the autoscale thresholds assume (desired workers = ceil(backlog / (rate x drain))).
  EOT
  type = map(object({
    vm_size                 = string
    image                   = string
    gpu                     = bool
    min                     = number
    max                     = number
    default                 = number
    max_batch_size          = number
    per_worker_images_per_s = number
    target_drain_s          = number
  }))
  default = {
    cpu = {
      vm_size                 = "Standard_D8s_v5"
      image                   = "embedpool.azurecr.io/embedpool/worker-cpu:0.1.0"
      gpu                     = false
      min                     = 1
      max                     = 20
      default                 = 2
      max_batch_size          = 16
      per_worker_images_per_s = 20
      target_drain_s          = 60
    }
    gpu = {
      vm_size                 = "Standard_NC4as_T4_v3"
      image                   = "embedpool.azurecr.io/embedpool/worker-gpu:0.1.0"
      gpu                     = true
      min                     = 1
      max                     = 8
      default                 = 1
      max_batch_size          = 32
      per_worker_images_per_s = 150
      target_drain_s          = 60
    }
  }

  validation {
    condition     = alltrue([for p in values(var.worker_pools) : p.min >= 1 && p.min <= p.default && p.default <= p.max])
    error_message = "worker_pools: need 1 <= min <= default <= max (a pool at zero instances publishes no metric to scale on)."
  }
}

variable "telegraf_image" {
  description = "Telegraf image that forwards the worker's Prometheus metrics to Azure Monitor custom metrics."
  type        = string
  default     = "telegraf:1.34"
}
