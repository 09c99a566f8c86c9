package mapping

import (
	"context"
	"fmt"
	"math"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"

	"github.com/twinflow/twinflow/internal/dtdl"
)

// The defaults of Config.
const (
	// DefaultCostLimit bounds the CEL cost of mapping one message. One unit is roughly one
	// operation on one value, some 50 to 150 ns of one core, so a runaway rule is stopped
	// after about a tenth of a second.
	DefaultCostLimit = 1_000_000
	// DefaultMaxMessageBytes is the largest message body a mapping takes (256 KiB).
	DefaultMaxMessageBytes = 256 << 10
	// DefaultEstimateSize is the size of every input in compile-time cost estimates.
	DefaultEstimateSize = 1024
)

// graphCallCost is the CEL cost of reading a twin (the target, or one twinById reads) or
// asking the graph (incoming, outgoing; plus the length of the list they return).
const graphCallCost = 100

// Config bounds what mappings may cost. Zero fields take their defaults.
type Config struct {
	// CostLimit is the most CEL cost the expressions evaluated for one message may take
	// together (every target twin included). Each expression stops as soon as it alone
	// reaches the limit; the total is checked after each expression. A message over the
	// limit fails (and becomes a dead letter).
	CostLimit uint64
	// MaxMessageBytes is the largest message body a mapping takes: Map refuses a larger one.
	MaxMessageBytes int
	// EstimateSize is the size Compile assumes for every input when it estimates an
	// expression's cost: strings of that many bytes, lists and maps of that many entries
	// (the message's parts, twin documents, the lists incoming and outgoing return). Compile
	// refuses an expression whose worst case for such inputs is over CostLimit: one whose
	// cost grows so much faster than its input (a loop over the message nested in another)
	// that ordinary messages would take it over. The estimate is no guarantee for larger
	// inputs; CostLimit is, when the expression runs.
	EstimateSize int
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.CostLimit == 0 {
		c.CostLimit = DefaultCostLimit
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.EstimateSize <= 0 {
		c.EstimateSize = DefaultEstimateSize
	}
	return c
}

// Graph answers the relationship questions of the CEL functions incoming and outgoing.
// graph.Index implements it. Calls may come from several goroutines at once.
type Graph interface {
	// Incoming returns the ids of the twins with a relationship named name to twin id, and
	// Outgoing the ids of the twins that twin id has a relationship named name to: empty
	// when there are none or there is no twin id. An error is a failure to read, not the
	// message's fault.
	Incoming(ctx context.Context, id, name string) ([]string, error)
	Outgoing(ctx context.Context, id, name string) ([]string, error)
}

// Models finds a model by its DTMI; *dtdl.ModelSet implements it.
type Models interface {
	Interface(id string) (*dtdl.Interface, bool)
}

// Deps are what Compile needs besides the definition.
type Deps struct {
	// Models are the models known when the mapping is compiled, to check the patch paths
	// of a mapping that creates twins. Required when the definition has createTwin.
	Models Models
	// Graph answers incoming and outgoing. When nil, they are not declared, so a mapping
	// that calls them does not compile.
	Graph Graph
}

// The names the CEL environment declares (see the package documentation).
const (
	varBody     = "message.body"
	varTopic    = "message.topic"
	varKey      = "message.key"
	varHeaders  = "message.headers"
	varTime     = "message.time"
	varTwin     = "twin"
	fnTwinByID  = "twinById"
	fnIncoming  = "incoming"
	fnOutgoing  = "outgoing"
	ovTwinByID  = "twinById_string"
	ovIncoming  = "incoming_string_string"
	ovOutgoing  = "outgoing_string_string"
	maxJSONDeep = 64 // the deepest JSON value a mapping reads or writes
)

// envs are the two CEL environments of a mapping: message for the expressions evaluated once
// per message (twinId, twinIds, a condition that does not refer to twin), target for those
// evaluated for each target twin, which also see twin.
type envs struct {
	message, target *cel.Env
}

// newEnvs builds the CEL environments. Functions are declared with late bindings: their
// implementations depend on the message being mapped, and come with its activation.
// incoming and outgoing are declared only when withGraph.
func newEnvs(cfg Config, withGraph bool) (envs, error) {
	size := uint64(cfg.EstimateSize)
	graphCost := func(listResult bool) cost.OverloadModelOption {
		return cost.ManualCost(
			func(cost.Estimator, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
				c := cost.FixedCostEstimate(graphCallCost)
				if listResult {
					c = cost.RangedCostEstimate(graphCallCost, graphCallCost+size)
				}
				return &cost.CallEstimate{CostEstimate: c, ResultSize: &cost.SizeEstimate{Min: 0, Max: size}}
			},
			func(_ []ref.Val, result ref.Val) *uint64 {
				c := uint64(graphCallCost)
				if l, ok := result.(traits.Sizer); ok {
					if n, ok := l.Size().(types.Int); ok && n > 0 {
						c += uint64(n)
					}
				}
				return &c
			})
	}
	opts := []cel.EnvOption{
		cel.CustomTypeAdapter(jsonAdapter{}),
		cel.Variable(varBody, cel.DynType),
		cel.Variable(varTopic, cel.StringType),
		cel.Variable(varKey, cel.StringType),
		cel.Variable(varHeaders, cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable(varTime, cel.TimestampType),
		cel.Function(fnTwinByID, cel.Overload(ovTwinByID, []*cel.Type{cel.StringType}, cel.DynType, cel.LateFunctionBinding())),
		ext.Strings(),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
	}
	models := []cost.OverloadModel{cost.Overload(ovTwinByID, graphCost(false))}
	if withGraph {
		idPair := []*cel.Type{cel.StringType, cel.StringType}
		opts = append(opts,
			cel.Function(fnIncoming, cel.Overload(ovIncoming, idPair, cel.ListType(cel.StringType), cel.LateFunctionBinding())),
			cel.Function(fnOutgoing, cel.Overload(ovOutgoing, idPair, cel.ListType(cel.StringType), cel.LateFunctionBinding())))
		models = append(models, cost.Overload(ovIncoming, graphCost(true)), cost.Overload(ovOutgoing, graphCost(true)))
	}
	msgEnv, err := cel.NewEnv(append(opts, cel.CostModel(models...))...)
	if err != nil {
		return envs{}, fmt.Errorf("build CEL environment: %w", err)
	}
	targetEnv, err := msgEnv.Extend(cel.Variable(varTwin, cel.DynType))
	if err != nil {
		return envs{}, fmt.Errorf("build CEL environment: %w", err)
	}
	return envs{message: msgEnv, target: targetEnv}, nil
}

// estimator gives every input the size Config.EstimateSize, for CEL's cost estimates.
type estimator struct {
	size uint64
}

func (e estimator) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

func (e estimator) EstimateSize(cost.AstNode) *cost.SizeEstimate {
	return &cost.SizeEstimate{Min: 0, Max: e.size}
}

// estimateCost returns the worst-case CEL cost of a checked expression, saturated at
// math.MaxUint64.
func estimateCost(env *cel.Env, ast *cel.Ast, cfg Config) (uint64, error) {
	est, err := env.EstimateCost(ast, estimator{size: uint64(cfg.EstimateSize)})
	if err != nil {
		return math.MaxUint64, err
	}
	return est.Max, nil
}
