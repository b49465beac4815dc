import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Aspects } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { stackPropsFromContext } from '../lib/config';
import { KafkaEsmStack } from '../lib/kafka-esm-stack';
import { CfnTemplate, Json, Scope, evaluate } from './cfn';

export const STACK_NAME = 'KafkaEsmTest';
export const ACCOUNT = '123456789012';
export const REGION = 'us-east-1';

/** cdk.json's context: the example inputs, feature flags and CLI settings, as `cdk synth` sees them. */
function cdkJsonContext(): Record<string, Json> {
  return JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8')).context;
}

/** The example inputs of cdk.json (without feature flags and CLI settings). */
export function exampleContext(): Record<string, Json> {
  const context: Record<string, Json> = {};
  for (const [key, value] of Object.entries(cdkJsonContext())) {
    if (!key.includes(':') && key !== 'cli-telemetry') context[key] = value;
  }
  return context;
}

const codeDirs: Record<string, string> = {};
/**
 * A stand-in for `target/lambda/<arch>`: `poller/bootstrap` and `custom-resource/bootstrap`, each
 * the 64-byte ELF header of an executable for `arch` (all the construct reads), made once per test file.
 */
export function fakeCodeDir(arch: 'arm64' | 'x86_64' = 'arm64'): string {
  if (codeDirs[arch] === undefined) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kafka-esm-lambda-${arch}-`));
    for (const binary of ['poller', 'custom-resource']) {
      fs.mkdirSync(path.join(dir, binary));
      fs.writeFileSync(path.join(dir, binary, 'bootstrap'), elfHeader(arch === 'arm64' ? 183 : 62), { mode: 0o755 });
    }
    codeDirs[arch] = dir;
  }
  return codeDirs[arch];
}

/** The ELF64 little-endian header of a position-independent executable for `machine`. */
export function elfHeader(machine: number): Buffer {
  const header = Buffer.alloc(64);
  header.write('\x7fELF', 0, 'latin1');
  header[4] = 2; // ELFCLASS64
  header[5] = 1; // little-endian
  header[6] = 1; // EV_CURRENT
  header.writeUInt16LE(3, 16); // ET_DYN
  header.writeUInt16LE(machine, 18);
  return header;
}

export interface Synthesized {
  readonly app: App;
  readonly stack: KafkaEsmStack;
  readonly template: Template;
}

/** Synthesizes the example stack with cdk.json's values, overridden by `context`. */
export function synth(context: Record<string, Json> = {}, options: { nag?: boolean } = {}): Synthesized {
  const app = new App({
    context: {
      ...cdkJsonContext(),
      codePath: fakeCodeDir(context.architecture === 'x86_64' ? 'x86_64' : 'arm64'),
      ...context,
    },
    analyticsReporting: false,
  });
  const stack = new KafkaEsmStack(app, STACK_NAME, stackPropsFromContext(app));
  if (options.nag) {
    Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  }
  return { app, stack, template: Template.fromStack(stack) };
}

/** Pseudo parameters as the stack would see them when deployed. */
export function pseudoParameters(stackName: string): Record<string, string> {
  return {
    'AWS::AccountId': ACCOUNT,
    'AWS::Region': REGION,
    'AWS::Partition': 'aws',
    'AWS::URLSuffix': 'amazonaws.com',
    'AWS::StackName': stackName,
  };
}

/** One allowed (action, resource) pair of the role. */
export interface Grant {
  readonly action: string;
  readonly resource: string;
}

/**
 * Every (action, resource) the role with logical id `roleId` is allowed, from the AWS::IAM::Policy
 * resources attached to it and its inline policies, after evaluation in `scope`. Throws on
 * anything that would make the list incomplete: Deny, NotAction, NotResource, conditions or
 * managed policies.
 */
export function roleGrants(template: CfnTemplate, roleId: string, scope: Scope): Grant[] {
  const role = template.Resources[roleId];
  const documents: Json[] = [];
  if ((role.Properties.ManagedPolicyArns ?? []).length > 0) {
    throw new Error(`role ${roleId} has managed policies: ${JSON.stringify(role.Properties.ManagedPolicyArns)}`);
  }
  for (const policy of role.Properties.Policies ?? []) documents.push(policy.PolicyDocument);
  for (const resource of Object.values(template.Resources)) {
    if (resource.Type !== 'AWS::IAM::Policy' && resource.Type !== 'AWS::IAM::ManagedPolicy') continue;
    const roles: Json[] = resource.Properties.Roles ?? [];
    if (roles.some((r) => r?.Ref === roleId)) documents.push(resource.Properties.PolicyDocument);
  }
  const grants: Grant[] = [];
  for (const document of documents) {
    for (const statement of evaluate(document, scope).Statement) {
      for (const key of ['NotAction', 'NotResource', 'Condition', 'Principal']) {
        if (key in statement) throw new Error(`statement with ${key} is not comparable: ${JSON.stringify(statement)}`);
      }
      if (statement.Effect !== 'Allow') throw new Error(`unexpected effect in ${JSON.stringify(statement)}`);
      for (const action of [statement.Action].flat()) {
        for (const resource of [statement.Resource].flat()) {
          grants.push({ action, resource });
        }
      }
    }
  }
  return grants;
}

/** `action resource` lines, sorted and de-duplicated: easy to read in a failed expectation. */
export function grantLines(grants: Grant[]): string[] {
  return [...new Set(grants.map((g) => `${g.action} ${g.resource}`))].sort();
}

/** The logical ids of the resources of one type. */
export function idsOfType(template: CfnTemplate, type: string): string[] {
  return Object.entries(template.Resources)
    .filter(([, r]) => r.Type === type)
    .map(([id]) => id);
}

/** Evaluation scope for a synthesized CDK template: resources keep their logical ids. */
export function cdkScope(template: CfnTemplate): Scope {
  return {
    parameters: {},
    pseudo: pseudoParameters(STACK_NAME),
    conditions: {},
    resourceName: (id) => (id in template.Resources ? id : undefined),
  };
}
