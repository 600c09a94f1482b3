package jobs

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
)

// tenantSeparator joins a queue and a tenant into the name of the tenant's
// River queue. River queue names are lower-case letters and digits joined
// by single '_' or '-', so no punctuation of its own is free; a queue
// named in QUEUES must not contain the separator, which makes the first
// one in a name the boundary whatever the tenant's name holds.
const tenantSeparator = "-tenant-"

// TenantQueue is the River queue that holds tenant's tasks for queue when
// fair share is on: each tenant has its own queue, so its own producer and
// its own MaxWorkers, and a backlog in one tenant's queue never delays
// another's. An empty tenant is the queue itself.
func TenantQueue(queue, tenant string) string {
	if tenant == "" {
		return queue
	}
	return queue + tenantSeparator + tenant
}

// TenantQueuePrefix is how the name of every tenant's River queue for
// queue begins.
func TenantQueuePrefix(queue string) string { return queue + tenantSeparator }

// BaseQueue is the queue a River queue serves: queue for TenantQueue(queue,
// tenant), and any other name unchanged. Task views show it, so that the
// API speaks of the queues clients name.
func BaseQueue(riverQueue string) string {
	base, _, _ := strings.Cut(riverQueue, tenantSeparator)
	return base
}

// validateTenantQueues refuses a queue whose name holds the tenant
// separator, a tenant without a name, and a negative cap. River itself
// refuses a tenant's queue name it cannot take.
func validateTenantQueues(queues []string, tenants map[string]int) error {
	for _, q := range queues {
		if q == InternalQueue {
			return fmt.Errorf("river client: queue %q is taskrunner's own (QUEUES)", q)
		}
		if strings.Contains(q, tenantSeparator) {
			return fmt.Errorf("river client: queue %q contains %q, which names tenants' queues (QUEUES)", q, tenantSeparator)
		}
		if q == CallbackQueue {
			return fmt.Errorf("river client: queue %q is taskrunner's own, for callback deliveries (QUEUES)", q)
		}
		if q == ExternalQueue {
			return fmt.Errorf("river client: queue %q holds the tasks of types defined at run time, which no worker of the server's may work (QUEUES)", q)
		}
	}
	for name, maxRunning := range tenants {
		if name == "" {
			return errors.New("river client: a tenant without a name cannot have a queue")
		}
		if maxRunning < 0 {
			return fmt.Errorf("river client: tenant %q: max running must not be negative, got %d", name, maxRunning)
		}
	}
	return nil
}

// queueConfigs are the queues a working client serves, each with its
// MaxWorkers: the internal queue (taskrunner's own jobs) and every queue
// of cfg at cfg.Concurrency, every tenant's tick queue at
// TenantTickConcurrency, and for every tenant its own queue per queue at
// min(cfg.Concurrency, its max running), or cfg.Concurrency when it has
// no cap. With callbacks configured, the callback delivery queue and every
// tenant's own are served too, each at the tenant's cap on deliveries at
// once.
func queueConfigs(cfg ClientConfig) map[string]int {
	out := make(map[string]int, 1+len(cfg.Queues)*(1+len(cfg.Tenants)))
	out[InternalQueue] = cfg.Concurrency
	for tenant := range cfg.Tenants {
		out[ScheduleTickQueueFor(tenant)] = TenantTickConcurrency
	}
	for _, q := range cfg.Queues {
		out[q] = cfg.Concurrency
		for tenant, maxRunning := range cfg.Tenants {
			n := cfg.Concurrency
			if maxRunning > 0 {
				n = min(n, maxRunning)
			}
			out[TenantQueue(q, tenant)] = n
		}
	}
	if cfg.Deps.Callback != nil {
		out[CallbackQueue] = cfg.CallbackConcurrency
		for tenant := range cfg.Tenants {
			out[CallbackQueueFor(tenant)] = cmp.Or(cfg.CallbackTenants[tenant], cfg.CallbackConcurrency)
		}
	}
	return out
}
