// A small CloudFormation evaluator for the tests: loads template.yaml (short-form intrinsic tags
// included), settles Conditions and intrinsic functions for given parameter values, and renders
// references to resources as `<Name>` / `<Name.Attr>` under a canonical, template-independent name.
// It covers the intrinsics our templates use; anything else throws, so nothing is compared unseen.
import * as fs from 'fs';
import * as YAML from 'yaml';

/* eslint-disable @typescript-eslint/no-explicit-any */
export type Json = any;
export type CfnTemplate = { Parameters?: Json; Conditions?: Json; Resources: Record<string, Json>; Outputs?: Json };

const SHORT_FORMS = [
  'Ref', 'Condition', 'GetAtt', 'Sub', 'Join', 'Split', 'Select', 'If', 'Equals', 'Not', 'And', 'Or',
  'FindInMap', 'Base64', 'Cidr', 'GetAZs', 'ImportValue',
];

/** Parses a YAML CloudFormation template, turning `!Sub x` into `{ "Fn::Sub": x }` and so on. */
export function loadYamlTemplate(file: string): CfnTemplate {
  const customTags: YAML.Tags = [];
  for (const name of SHORT_FORMS) {
    const key = name === 'Ref' || name === 'Condition' ? name : `Fn::${name}`;
    for (const collection of [undefined, 'seq', 'map'] as const) {
      customTags.push({
        tag: `!${name}`,
        collection,
        resolve: (value: any) => {
          let json = collection ? value.toJSON() : value;
          if (name === 'GetAtt' && typeof json === 'string') {
            const dot = json.indexOf('.');
            json = [json.slice(0, dot), json.slice(dot + 1)];
          }
          return { [key]: json } as any;
        },
      } as YAML.CollectionTag | YAML.ScalarTag);
    }
  }
  return YAML.parse(fs.readFileSync(file, 'utf8'), { customTags });
}

/** What an expression is evaluated against. */
export interface Scope {
  /** Template parameter values: lists for list-typed parameters, strings otherwise. */
  readonly parameters: Record<string, string | string[]>;
  /** Pseudo parameters: AWS::Region, AWS::AccountId, AWS::Partition, AWS::StackName, AWS::URLSuffix. */
  readonly pseudo: Record<string, string>;
  /** Settled conditions. */
  readonly conditions: Record<string, boolean>;
  /** Canonical name of a resource, by logical id (undefined: not a resource). */
  readonly resourceName: (logicalId: string) => string | undefined;
}

/** AWS::NoValue: removed from the enclosing list or object. */
export const NO_VALUE: unique symbol = Symbol('AWS::NoValue');

export function evaluate(node: Json, scope: Scope): Json {
  if (Array.isArray(node)) {
    return node.map((n) => evaluate(n, scope)).filter((n) => n !== NO_VALUE);
  }
  if (node === null || typeof node !== 'object') {
    return node;
  }
  const keys = Object.keys(node);
  if (keys.length === 1 && (keys[0] === 'Ref' || keys[0].startsWith('Fn::') || keys[0] === 'Condition')) {
    return intrinsic(keys[0], node[keys[0]], scope);
  }
  const out: Record<string, Json> = {};
  for (const key of keys) {
    const value = evaluate(node[key], scope);
    if (value !== NO_VALUE) out[key] = value;
  }
  return out;
}

function ref(name: string, scope: Scope): Json {
  if (name === 'AWS::NoValue') return NO_VALUE;
  if (name in scope.pseudo) return scope.pseudo[name];
  if (name in scope.parameters) return scope.parameters[name];
  const resource = scope.resourceName(name);
  if (resource !== undefined) return `<${resource}>`;
  throw new Error(`Ref to unknown name ${name}`);
}

function getAtt(logicalId: string, attribute: string, scope: Scope): string {
  const resource = scope.resourceName(logicalId);
  if (resource === undefined) throw new Error(`GetAtt on unknown resource ${logicalId}`);
  return `<${resource}.${attribute}>`;
}

function asString(value: Json, what: string): string {
  if (typeof value === 'number') return String(value);
  if (typeof value !== 'string') throw new Error(`${what} must be a string, got ${JSON.stringify(value)}`);
  return value;
}

function intrinsic(fn: string, arg: Json, scope: Scope): Json {
  switch (fn) {
    case 'Ref':
      return ref(arg, scope);
    case 'Condition':
      return condition(arg, scope);
    case 'Fn::GetAtt': {
      const [logicalId, attribute] = Array.isArray(arg) ? arg : String(arg).split(/\.(.*)/);
      return getAtt(logicalId, attribute, scope);
    }
    case 'Fn::Join': {
      const [delimiter, list] = arg;
      const values = evaluate(list, scope);
      if (!Array.isArray(values)) throw new Error(`Fn::Join needs a list, got ${JSON.stringify(values)}`);
      return values.map((v: Json) => asString(v, 'Fn::Join element')).join(delimiter);
    }
    case 'Fn::Split': {
      const [delimiter, source] = arg;
      return asString(evaluate(source, scope), 'Fn::Split source').split(delimiter);
    }
    case 'Fn::Select': {
      const [index, list] = arg;
      const values = evaluate(list, scope);
      const i = Number(evaluate(index, scope));
      if (!Array.isArray(values) || i < 0 || i >= values.length) throw new Error(`Fn::Select ${i} out of range`);
      return values[i];
    }
    case 'Fn::Sub': {
      const [text, variables] = Array.isArray(arg) ? arg : [arg, {}];
      const bound: Record<string, Json> = {};
      for (const [k, v] of Object.entries(variables ?? {})) bound[k] = evaluate(v, scope);
      return String(text).replace(/\$\{(!?)([^}]+)\}/g, (_match, literal: string, name: string) => {
        if (literal) return '${' + name + '}';
        if (name in bound) return asString(bound[name], `Fn::Sub variable ${name}`);
        if (name.includes('.') && !name.startsWith('AWS::')) {
          const [logicalId, attribute] = name.split(/\.(.*)/);
          return getAtt(logicalId, attribute, scope);
        }
        return asString(ref(name, scope), `Fn::Sub variable ${name}`);
      });
    }
    case 'Fn::If': {
      const [name, whenTrue, whenFalse] = arg;
      return evaluate(condition(name, scope) ? whenTrue : whenFalse, scope);
    }
    case 'Fn::Equals': {
      const [a, b] = arg.map((x: Json) => evaluate(x, scope));
      return JSON.stringify(a) === JSON.stringify(b);
    }
    case 'Fn::Not':
      return !evaluate(arg[0], scope);
    case 'Fn::And':
      return arg.every((x: Json) => evaluate(x, scope));
    case 'Fn::Or':
      return arg.some((x: Json) => evaluate(x, scope));
    default:
      throw new Error(`intrinsic ${fn} is not supported by the test evaluator`);
  }
}

function condition(name: string, scope: Scope): boolean {
  if (!(name in scope.conditions)) throw new Error(`unknown condition ${name}`);
  return scope.conditions[name];
}

/** Settles a template's Conditions section (conditions may refer to earlier ones in any order). */
export function settleConditions(
  template: CfnTemplate,
  parameters: Record<string, string | string[]>,
  pseudo: Record<string, string>,
): Record<string, boolean> {
  const definitions: Record<string, Json> = template.Conditions ?? {};
  const settled: Record<string, boolean> = {};
  const visiting = new Set<string>();
  const scope: Scope = {
    parameters,
    pseudo,
    resourceName: () => undefined,
    get conditions() {
      return new Proxy(settled, {
        has: (_t, key: string) => key in definitions,
        get: (_t, key: string) => settle(key),
      });
    },
  };
  const settle = (name: string): boolean => {
    if (name in settled) return settled[name];
    if (visiting.has(name)) throw new Error(`condition cycle at ${name}`);
    visiting.add(name);
    settled[name] = Boolean(evaluate(definitions[name], scope));
    return settled[name];
  };
  for (const name of Object.keys(definitions)) settle(name);
  return settled;
}
