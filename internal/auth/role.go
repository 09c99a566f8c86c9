package auth

import (
	"fmt"
	"strings"
)

// Role is what an identity may do. Roles are ordered: each holds every right of the roles
// before it, so a check is one comparison (Allows).
type Role int

// The roles, from least to most. RoleNone is an identity the server recognises that holds no
// role (a token none of whose role claims is mapped): it may do nothing.
const (
	RoleNone Role = iota
	// RoleReader is ADT's Azure Digital Twins Data Reader: every read and query of models,
	// twins, relationships, event routes, jobs and data history, and /metrics.
	RoleReader
	// RoleOwner is ADT's Azure Digital Twins Data Owner: every ADT data-plane operation
	// (models, twins, relationships, queries, telemetry, event routes, jobs), and pushing
	// messages to http sources.
	RoleOwner
	// RoleAdmin administers twinflow's own resources besides: endpoints, sources, mappings,
	// API keys and the settings of data history.
	RoleAdmin
)

// roleNames are the names of the roles as configuration, the API and the command line spell
// them.
var roleNames = [...]string{RoleNone: "none", RoleReader: "reader", RoleOwner: "owner", RoleAdmin: "admin"}

// String returns the role's name: "none", "reader", "owner" or "admin".
func (r Role) String() string {
	if r >= 0 && int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Allows reports whether r holds every right of need.
func (r Role) Allows(need Role) bool { return r >= need }

// ParseRole returns the role named s: "reader", "owner" or "admin", in any case. "none" is
// no role anyone is given, so it is refused with the rest.
func ParseRole(s string) (Role, error) {
	for r := RoleReader; r <= RoleAdmin; r++ {
		if strings.EqualFold(s, roleNames[r]) {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("%q is not a role: want reader, owner or admin", s)
}
