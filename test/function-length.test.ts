import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT } from '@embedpool/testkit';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * No function in production code is longer than MAX_LINES without a comment saying why. A long body is
 * usually several steps that want names of their own; when it is not (a declarative table, one state
 * machine read top to bottom), the comment right above the function says so with `Long:` followed by the
 * reason, e.g. `// Long: one literal table, no logic.` or a JSDoc line `Long: ...`.
 */
const MAX_LINES = 80;
const REASON = /\bLong:\s*\S/;

/** Production source: the packages' and apps' src, the CLI; never tests or the test kit. */
const ROOTS = ['packages', 'apps', 'bin'];
const SKIP_DIRS = new Set(['node_modules', '.types', 'dist', 'testkit', 'test', 'fixtures']);

/**
 * Known offenders, each `file:function`, while one is being reworked elsewhere; empty otherwise (a fixed
 * one must leave it, see below).
 */
const ALLOWED: ReadonlySet<string> = new Set([]);

function sourceFiles(dir: string, inSrc: boolean, out: string[]): string[] {
  for (const name of readdirSync(dir)) {
    if (SKIP_DIRS.has(name) || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      sourceFiles(path, inSrc || name === 'src', out);
    } else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) {
      const rel = relative(REPO_ROOT, path);
      if (inSrc || rel.startsWith('bin/')) out.push(path);
    }
  }
  return out;
}

type FunctionNode =
  | ts.FunctionDeclaration
  | ts.MethodDeclaration
  | ts.ArrowFunction
  | ts.FunctionExpression
  | ts.ConstructorDeclaration
  | ts.GetAccessorDeclaration
  | ts.SetAccessorDeclaration;

function isFunction(node: ts.Node): node is FunctionNode {
  return (
    ts.isFunctionDeclaration(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isArrowFunction(node) ||
    ts.isFunctionExpression(node) ||
    ts.isConstructorDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node)
  );
}

/** The function's name as a reader would say it: its own, or the variable, property or call it sits in. */
function nameOf(node: FunctionNode, sf: ts.SourceFile): string {
  if (node.name) return node.name.getText(sf);
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if (
    ts.isVariableDeclaration(parent) ||
    ts.isPropertyAssignment(parent) ||
    ts.isPropertyDeclaration(parent)
  ) {
    return parent.name.getText(sf);
  }
  if (ts.isCallExpression(parent)) {
    const first = parent.arguments[0];
    const label = first && ts.isStringLiteralLike(first) ? `'${first.text}'` : '…';
    return `${parent.expression.getText(sf).slice(0, 40)}(${label})`;
  }
  // No line numbers: the name must survive edits elsewhere in the file (the allow-list holds it).
  let outer: ts.Node = parent;
  while (!ts.isSourceFile(outer) && !isFunction(outer)) outer = outer.parent;
  const where = isFunction(outer) ? nameOf(outer, sf) : 'module';
  return ts.isReturnStatement(parent) ? `${where}/returned` : `${where}/anonymous`;
}

/**
 * The comments just above a function, or above the statement it is the value of (`const f = () => {}`,
 * `export const x = { f() {} }`, `worker.on('x', () => {})`).
 */
function leadingComments(node: FunctionNode, sf: ts.SourceFile): string {
  const text = sf.getFullText();
  const holders: ts.Node[] = [node];
  let p: ts.Node = node.parent;
  while (p && !ts.isSourceFile(p) && !ts.isBlock(p) && !ts.isClassLike(p)) {
    holders.push(p);
    if (ts.isStatement(p)) break;
    p = p.parent;
  }
  return holders
    .flatMap((h) => ts.getLeadingCommentRanges(text, h.getFullStart()) ?? [])
    .map((r) => text.slice(r.pos, r.end))
    .join('\n');
}

interface Offender {
  where: string;
  lines: number;
}

/** Functions of `sf` whose body is over MAX_LINES lines with no `Long:` comment, by name. */
function longFunctionsIn(sf: ts.SourceFile): { name: string; lines: number }[] {
  const found: { name: string; lines: number }[] = [];
  const visit = (node: ts.Node) => {
    if (isFunction(node) && node.body) {
      const start = sf.getLineAndCharacterOfPosition(node.body.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.body.getEnd()).line;
      const lines = end - start + 1;
      if (lines > MAX_LINES && !REASON.test(leadingComments(node, sf)))
        found.push({ name: nameOf(node, sf), lines });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

function longFunctions(file: string): Offender[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  return longFunctionsIn(sf).map((f) => ({
    where: `${relative(REPO_ROOT, file)}:${f.name}`,
    lines: f.lines,
  }));
}

describe('function length', () => {
  const files = ROOTS.flatMap((root) => sourceFiles(join(REPO_ROOT, root), false, []));

  it('finds the production sources', () => {
    expect(files.length).toBeGreaterThan(100);
    const rel = files.map((f) => relative(REPO_ROOT, f));
    expect(rel).toContain('apps/worker/src/embed-pipeline.ts');
    expect(rel.some((f) => f.includes('testkit') || f.endsWith('.test.ts'))).toBe(false);
  });

  it(`no function over ${MAX_LINES} lines without a "Long:" comment saying why`, () => {
    const offenders = files.flatMap(longFunctions);
    const unexplained = offenders.filter((o) => !ALLOWED.has(o.where));
    expect(unexplained.map((o) => `${o.where} (${o.lines} lines)`)).toEqual([]);
    // The allow-list holds only real offenders: a fixed one must leave it.
    const stale = [...ALLOWED].filter((a) => !offenders.some((o) => o.where === a));
    expect(stale).toEqual([]);
  });

  it('measures the body and reads the comment above the function or its statement', () => {
    const dir = join(REPO_ROOT, 'test');
    const body = Array.from({ length: MAX_LINES }, (_, i) => `  x += ${i};`).join('\n');
    const source = [
      `function long() {\n${body}\n}`,
      `// Long: a table.\nconst table = () => {\n${body}\n};`,
      `/**\n * Long: one state machine.\n */\nexport function machine() {\n${body}\n}`,
      `function short() {\n  return 1;\n}`,
    ].join('\n');
    const sf = ts.createSourceFile(join(dir, 'x.ts'), source, ts.ScriptTarget.Latest, true);
    expect(longFunctionsIn(sf).map((f) => f.name)).toEqual(['long']);
  });
});
