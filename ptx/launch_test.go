package ptx

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// A kernel launch from Go passes its arguments as untyped 8-byte slots (see
// kernels.arg), so the compiler cannot catch a launcher whose arguments do
// not match the kernel. This test reads the Go launchers' source and the
// PTX entry declarations and compares them, argument by argument. (The
// kernels package itself cannot be imported here: it links gorgonia.org/cu,
// whose init exits on a machine without a GPU.)

// param is one kernel parameter as the PTX declares it.
type param struct {
	ptxType string // u64, u32, s32, f32, ...
}

// class maps a PTX parameter type to the Go helper that must pass it.
func (p param) class() string {
	switch p.ptxType {
	case "u64", "s64", "b64":
		return "ptr"
	case "u32", "s32", "b32":
		return "i32"
	case "f32":
		return "f32"
	}
	return "unsupported ." + p.ptxType
}

var (
	entryRe = regexp.MustCompile(`(?s)\.entry\s+(\w+)\s*\((.*?)\)`)
	paramRe = regexp.MustCompile(`\.param\s+\.(\w+)`)
)

// entries returns every kernel entry of every PTX module, by module then
// name.
func entries(t *testing.T) map[string]map[string][]param {
	t.Helper()
	out := map[string]map[string][]param{}
	for _, f := range ptxFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		mod := strings.TrimSuffix(f, ".ptx")
		out[mod] = map[string][]param{}
		for _, m := range entryRe.FindAllStringSubmatch(string(b), -1) {
			var ps []param
			for _, pm := range paramRe.FindAllStringSubmatch(m[2], -1) {
				ps = append(ps, param{ptxType: pm[1]})
			}
			out[mod][m[1]] = ps
		}
	}
	return out
}

// binding is a kernel field bound to an entry by l.kernel(module, entry).
type binding struct{ module, entry string }

// launchSite is one x.field.launch(...) call.
type launchSite struct {
	pos     string
	key     string   // receiver type and field: "Common.fill"
	helpers []string // ptr, i32, f32, or the offending expression
}

// receiverType names a method's receiver type without the star.
func receiverType(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return ""
	}
	expr := fn.Recv.List[0].Type
	if star, ok := expr.(*ast.StarExpr); ok {
		expr = star.X
	}
	if id, ok := expr.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// parseLaunchers reads the Go launchers of dir.
func parseLaunchers(t *testing.T, dir string) (map[string]binding, []launchSite) {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	bindings := map[string]binding{}
	var sites []launchSite
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			recv := receiverType(fn)
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.AssignStmt:
					// x.field = l.kernel("module", "entry")
					if len(n.Lhs) != 1 || len(n.Rhs) != 1 {
						return true
					}
					sel, ok := n.Lhs[0].(*ast.SelectorExpr)
					call, ok2 := n.Rhs[0].(*ast.CallExpr)
					if !ok || !ok2 || !isMethodCall(call, "kernel") || len(call.Args) != 2 {
						return true
					}
					mod, err1 := strconv.Unquote(basicLit(call.Args[0]))
					entry, err2 := strconv.Unquote(basicLit(call.Args[1]))
					if err1 != nil || err2 != nil {
						t.Errorf("%s: l.kernel takes two string literals", fset.Position(call.Pos()))
						return true
					}
					bindings[recv+"."+sel.Sel.Name] = binding{mod, entry}
				case *ast.CallExpr:
					// x.field.launch(stream, grid, block, shared, args...)
					if !isMethodCall(n, "launch") {
						return true
					}
					field, ok := n.Fun.(*ast.SelectorExpr).X.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					site := launchSite{pos: fset.Position(n.Pos()).String(), key: recv + "." + field.Sel.Name}
					if len(n.Args) < 4 {
						t.Errorf("%s: launch needs stream, grid, block and shared bytes", site.pos)
						return true
					}
					if n.Ellipsis.IsValid() {
						site.helpers = append(site.helpers, "a spread slice (args...)")
					}
					for _, a := range n.Args[4:] {
						site.helpers = append(site.helpers, helperName(a))
					}
					sites = append(sites, site)
				}
				return true
			})
		}
	}
	return bindings, sites
}

func isMethodCall(call *ast.CallExpr, name string) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == name
}

func basicLit(e ast.Expr) string {
	if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
		return lit.Value
	}
	return ""
}

// helperName returns ptr, i32 or f32 for a call of that helper, and a
// description of anything else.
func helperName(e ast.Expr) string {
	if call, ok := e.(*ast.CallExpr); ok && len(call.Args) == 1 {
		if id, ok := call.Fun.(*ast.Ident); ok {
			switch id.Name {
			case "ptr", "i32", "f32":
				return id.Name
			}
		}
	}
	return fmt.Sprintf("an expression not wrapped in ptr/i32/f32 (%T)", e)
}

// checkLaunchers returns one message per mismatch between Go and PTX.
func checkLaunchers(ptx map[string]map[string][]param, bindings map[string]binding, sites []launchSite) []string {
	var problems []string
	launched := map[binding]bool{}
	for _, s := range sites {
		b, ok := bindings[s.key]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %s is launched but never bound with l.kernel", s.pos, s.key))
			continue
		}
		launched[b] = true
		params, ok := ptx[b.module][b.entry]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %s.ptx has no entry %s", s.pos, b.module, b.entry))
			continue
		}
		if len(s.helpers) != len(params) {
			problems = append(problems, fmt.Sprintf("%s: %s passes %d arguments, the PTX entry takes %d", s.pos, b.entry, len(s.helpers), len(params)))
			continue
		}
		for i, p := range params {
			if s.helpers[i] != p.class() {
				problems = append(problems, fmt.Sprintf("%s: %s argument %d is %s, the PTX declares .%s (needs %s)", s.pos, b.entry, i, s.helpers[i], p.ptxType, p.class()))
			}
		}
	}
	for key, b := range bindings {
		if _, ok := ptx[b.module][b.entry]; !ok {
			problems = append(problems, fmt.Sprintf("%s is bound to %s.ptx:%s, which does not exist", key, b.module, b.entry))
		} else if !launched[b] {
			problems = append(problems, fmt.Sprintf("%s (%s) is bound but never launched", key, b.entry))
		}
	}
	sort.Strings(problems)
	return problems
}

// TestLaunchersMatchPTX checks every launcher in package kernels.
func TestLaunchersMatchPTX(t *testing.T) {
	ptx := entries(t)
	bindings, sites := parseLaunchers(t, "../kernels")
	if len(sites) == 0 {
		t.Fatal("found no launch calls in ../kernels")
	}
	for _, p := range checkLaunchers(ptx, bindings, sites) {
		t.Error(p)
	}
	// Every PTX entry must have a launcher: an unbound kernel is dead code.
	bound := map[binding]bool{}
	for _, b := range bindings {
		bound[b] = true
	}
	for mod, es := range ptx {
		for name := range es {
			if !bound[binding{mod, name}] {
				t.Errorf("%s.ptx: entry %s has no Go launcher", mod, name)
			}
		}
	}
	t.Logf("checked %d launch sites against %d bound kernels", len(sites), len(bindings))
}

// TestCheckerCatchesMismatches feeds the checker broken launchers, so the
// test above is known to be able to fail.
func TestCheckerCatchesMismatches(t *testing.T) {
	ptx := map[string]map[string][]param{"m": {"k": {{"u64"}, {"u32"}, {"f32"}}}}
	bindings := map[string]binding{"K.k": {"m", "k"}}
	cases := []struct {
		name    string
		helpers []string
		want    string
	}{
		{"matching", []string{"ptr", "i32", "f32"}, ""},
		{"missing argument", []string{"ptr", "i32"}, "passes 2 arguments, the PTX entry takes 3"},
		{"extra argument", []string{"ptr", "i32", "f32", "i32"}, "passes 4 arguments"},
		{"swapped sizes", []string{"i32", "ptr", "f32"}, "argument 0 is i32, the PTX declares .u64"},
		{"int for float", []string{"ptr", "i32", "i32"}, "argument 2 is i32, the PTX declares .f32"},
		{"unwrapped", []string{"ptr", "an expression not wrapped in ptr/i32/f32 (*ast.Ident)", "f32"}, "not wrapped"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := checkLaunchers(ptx, bindings, []launchSite{{pos: "x.go:1", key: "K.k", helpers: c.helpers}})
			switch {
			case c.want == "" && len(got) != 0:
				t.Errorf("unexpected problems: %v", got)
			case c.want != "" && !strings.Contains(strings.Join(got, "\n"), c.want):
				t.Errorf("got %v, want a problem containing %q", got, c.want)
			}
		})
	}
}
