package docker

import (
	"github.com/docker/docker/client"

	"github.com/execd/execd/internal/sandbox"
)

// Client returns the runtime's Docker client, for tests to look at what
// it made.
func Client(r *Runtime) *client.Client { return r.cli }

// SandboxInfo returns the label value of a sandbox's objects and its
// network ID and bridge interface (empty without a network).
func SandboxInfo(sb sandbox.Sandbox) (id, networkID, bridge string) {
	s := sb.(*Sandbox)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id, s.networkID, s.bridge
}

// Label names, for tests' filters.
const (
	LabelManaged = labelManaged
	LabelOwner   = labelOwner
	LabelJob     = labelJob
	LabelSandbox = labelSandbox
	LabelRole    = labelRole
	RoleHolder   = roleHolder
)
