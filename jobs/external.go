package jobs

// ExternalQueue is the River queue of the tasks of types defined at run
// time (pull and push types), and with fair share the base of each
// tenant's own (TenantQueue). No in-process River producer works it: a
// producer fetches only from the queues of its client's Config.Queues
// (queueConfigs), and QUEUES may not name it (validateTenantQueues), so
// no client ever holds a producer for it or for a tenant's queue of it.
// Its tasks stay available until a worker outside the server takes them.
// Were a producer to fetch one, River would fail it as an unknown kind
// and in the end discard it.
const ExternalQueue = "external"
