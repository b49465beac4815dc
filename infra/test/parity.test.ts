// Parity between the CDK app (infra/) and the SAM template (template.yaml): both must deploy the
// same thing. What is compared, and why the comparison is honest:
//
// 1. Same inputs. The CDK app reads context keys (cdk.json) that are the SAM parameter names in
//    camelCase; each configuration below is given to the app as context and to the template as
//    parameter values, with the same pseudo parameters (account, region, partition, stack name).
//    A test checks that the two name sets match, so no input is left out of the comparison.
// 2. Both templates are evaluated (test/cfn.ts): Conditions, Ref, Fn::GetAtt/Sub/Join/Split/Select/
//    If and AWS::NoValue are settled to plain values. A reference to a resource becomes
//    `<Name>`/`<Name.Attr>`, where Name says what the resource is (type plus key attribute, e.g.
//    `Table:UUID`), never its logical id, which differs between the tools.
// 3. SAM's AWS::Serverless::Function is not a CloudFormation resource. It is expanded by the SAM
//    translator itself when KAFKA_ESM_SAM_TRANSLATED names its output (scripts/test-infra.sh makes
//    it with the pinned SAM CLI, offline); otherwise by `expandServerless` below, which mirrors what
//    the translator does for this template, and which a test compares with the translator's output
//    whenever that is available.
//
// Then compared, per configuration:
//   a. the role's allowed (action, resource) pairs: equal sets, with no Deny/NotAction/conditions
//      and no managed policies on either side;
//   b. the resource types and their counts (the CDK-only AWS::CDK::Metadata aside);
//   c. every resource's evaluated Properties, DeletionPolicy/UpdateReplacePolicy and dependencies
//      (DependsOn plus references), except fields that differ only by tool: the code location
//      (asset vs CodeUri), SAM's `lambda:createdBy` tag, event target ids, the IAM policy's name
//      and statement layout (its meaning is compared in a), and numbers vs numeric strings;
//   d. the outputs: names, descriptions and evaluated values.
import * as fs from 'fs';
import * as path from 'path';
import { CfnTemplate, Json, Scope, evaluate, loadYamlTemplate, settleConditions } from './cfn';
import { STACK_NAME, exampleContext, grantLines, idsOfType, pseudoParameters, roleGrants, synth } from './helpers';

const TEMPLATE_PATH = path.join(__dirname, '..', '..', 'template.yaml');
const TRANSLATED_PATH = process.env.KAFKA_ESM_SAM_TRANSLATED;

/** Context keys that only the CDK app has: its environment, the import of subnets by AZ, and the asset path. */
const CDK_ONLY_KEYS = ['account', 'region', 'availabilityZones', 'codePath', 'stackName'];

const CONFIGURATIONS: [string, Record<string, Json>][] = [
  ['the example values', {}],
  [
    'every option on',
    {
      iamAuthentication: true,
      secretArns: ['arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_a-AbCdEf', 'arn:aws:secretsmanager:us-east-1:123456789012:secret:ca-GhIjKl'],
      secretKmsKeyArns: ['arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555'],
      vpcEndpoints: true,
      eventSourceProvider: true,
      onFailureQueueArns: ['arn:aws:sqs:us-east-1:123456789012:failed-orders'],
      onFailureTopicArns: ['arn:aws:sns:us-east-1:123456789012:failed-orders', 'arn:aws:sns:us-east-1:123456789012:failed-payments'],
      onFailureBucketArns: ['arn:aws:s3:::failed-orders', 'arn:aws:s3:::failed-payments'],
      alarms: true,
      alarmTopicArn: 'arn:aws:sns:us-east-1:123456789012:ops',
      offsetLagAlarmThreshold: 5000,
      noPollerAlarmMinutes: 10,
      metricsNamespace: 'Orders',
      targetFunctionArns: ['arn:aws:lambda:us-east-1:123456789012:function:a', 'arn:aws:lambda:us-east-1:123456789012:function:b'],
    },
  ],
  [
    'self-managed Kafka, no reserved concurrency, a boundary',
    {
      clusterArn: '',
      iamAuthentication: true,
      vpcEndpoints: true,
      reserveConcurrency: false,
      drainTimeoutSeconds: 45,
      permissionsBoundaryArn: 'arn:aws:iam::123456789012:policy/team-boundary',
      eventSourceProvider: true,
      alarms: true,
    },
  ],
  [
    'x86_64 and other sizes',
    { architecture: 'x86_64', maximumPollers: 100, timeoutSeconds: 900, memorySize: 1024, logRetentionDays: 7, logLevel: 'kafka_esm=debug' },
  ],
];

const samParameterName = (contextKey: string) => contextKey[0].toUpperCase() + contextKey.slice(1);

/** The SAM template as plain CloudFormation: translated by SAM when available, else by hand. */
function samTemplate(): CfnTemplate {
  if (TRANSLATED_PATH) return JSON.parse(fs.readFileSync(TRANSLATED_PATH, 'utf8'));
  return expandServerless(loadYamlTemplate(TEMPLATE_PATH));
}

/**
 * What the SAM translator makes of this template's one function: an AWS::Lambda::Function with the
 * same properties (code moved to `Code`, SAM's tag added) and, for each Schedule event, an
 * AWS::Events::Rule plus the AWS::Lambda::Permission that lets EventBridge invoke the function.
 * Anything else SAM-specific throws, so the expansion cannot silently drift from the template.
 */
function expandServerless(template: CfnTemplate): CfnTemplate {
  const resources: Record<string, Json> = {};
  for (const [id, resource] of Object.entries(template.Resources)) {
    if (resource.Type !== 'AWS::Serverless::Function') {
      if (String(resource.Type).startsWith('AWS::Serverless::')) throw new Error(`no expansion for ${resource.Type}`);
      resources[id] = resource;
      continue;
    }
    const { Events: events = {}, CodeUri: _codeUri, ...properties } = resource.Properties;
    const { Properties: _p, Type: _t, ...attributes } = resource;
    resources[id] = {
      ...attributes,
      Type: 'AWS::Lambda::Function',
      Properties: { ...properties, Code: { S3Bucket: 'bucket', S3Key: 'value' }, Tags: [{ Key: 'lambda:createdBy', Value: 'SAM' }] },
    };
    for (const [eventId, event] of Object.entries<Json>(events)) {
      if (event.Type !== 'Schedule') throw new Error(`no expansion for ${event.Type} events`);
      const { Schedule: schedule, Description: description, ...rest } = event.Properties;
      if (Object.keys(rest).length > 0) throw new Error(`no expansion for Schedule properties ${Object.keys(rest)}`);
      const ruleId = `${id}${eventId}`;
      resources[ruleId] = {
        Type: 'AWS::Events::Rule',
        Properties: {
          ...(description === undefined ? {} : { Description: description }),
          ScheduleExpression: schedule,
          Targets: [{ Arn: { 'Fn::GetAtt': [id, 'Arn'] }, Id: `${ruleId}LambdaTarget` }],
        },
      };
      resources[`${ruleId}Permission`] = {
        Type: 'AWS::Lambda::Permission',
        Properties: {
          Action: 'lambda:InvokeFunction',
          FunctionName: { Ref: id },
          Principal: 'events.amazonaws.com',
          SourceArn: { 'Fn::GetAtt': [ruleId, 'Arn'] },
        },
      };
    }
  }
  const { Transform: _transform, ...rest } = template as Json;
  return { ...rest, Resources: resources };
}

/** SAM parameter values for a CDK context: lists stay lists, everything else is a string, as CloudFormation passes them. */
function samParameters(template: CfnTemplate, context: Record<string, Json>): Record<string, string | string[]> {
  const values: Record<string, string | string[]> = {};
  for (const [name, definition] of Object.entries<Json>(template.Parameters ?? {})) {
    const contextKey = name[0].toLowerCase() + name.slice(1);
    const value = contextKey in context ? context[contextKey] : definition.Default;
    if (value === undefined) throw new Error(`no value for parameter ${name}`);
    const isList = definition.Type === 'CommaDelimitedList' || String(definition.Type).startsWith('List<');
    values[name] = isList
      ? (Array.isArray(value) ? value : String(value).split(',')).map(String)
      : String(value);
  }
  return values;
}

/** A name for a resource that says what it is, the same in both templates. */
function canonicalName(resource: Json, scope: Scope, template: CfnTemplate): string {
  const p = resource.Properties ?? {};
  // The Custom::KafkaEsmEventSource provider's function, role, policy and log group.
  const isProviderRole = (role: Json) => /provider/.test(role?.Properties?.Description ?? '');
  const ofProvider =
    (['AWS::Lambda::Function', 'AWS::IAM::Role'].includes(resource.Type) && isProviderRole(resource)) ||
    (resource.Type === 'AWS::IAM::Policy' && isProviderRole(template.Resources[p.Roles?.[0]?.Ref])) ||
    (resource.Type === 'AWS::Logs::LogGroup' && p.LogGroupName === undefined);
  if (ofProvider) return `Provider${resource.Type.split('::')[2]}`;
  switch (resource.Type) {
    case 'AWS::DynamoDB::Table':
      return `Table:${p.KeySchema.find((k: Json) => k.KeyType === 'HASH').AttributeName}`;
    case 'AWS::Lambda::Permission':
      return `Permission:${p.Principal}`;
    case 'AWS::CloudWatch::Alarm':
      return `Alarm:${p.MetricName ?? 'expression'}`;
    case 'AWS::Logs::MetricFilter':
      return 'MetricFilter';
    case 'AWS::EC2::VPCEndpoint':
      return `VPCEndpoint:${String(evaluate(p.ServiceName, scope)).split('.').pop()}`;
    case 'AWS::Lambda::Function':
    case 'AWS::IAM::Role':
    case 'AWS::IAM::Policy':
    case 'AWS::Logs::LogGroup':
    case 'AWS::Events::Rule':
    case 'AWS::EC2::SecurityGroup':
    case 'AWS::SQS::Queue':
    case 'AWS::SQS::QueuePolicy':
    case 'AWS::Lambda::EventInvokeConfig':
      return resource.Type.split('::')[2];
    default:
      throw new Error(`no canonical name for ${resource.Type}: add one before comparing it`);
  }
}

interface Evaluated {
  /** Canonical name → evaluated resource (Properties, policies, dependencies). */
  readonly resources: Record<string, Json>;
  readonly types: string[];
  readonly grants: string[];
  readonly outputs: Record<string, Json>;
}

/** Evaluates a template for the given parameters and stack name; see the comment at the top. */
function evaluateTemplate(template: CfnTemplate, parameters: Record<string, string | string[]>, stackName: string): Evaluated {
  const pseudo = pseudoParameters(stackName);
  const conditions = settleConditions(template, parameters, pseudo);
  const present = Object.entries(template.Resources).filter(
    ([, r]) => r.Type !== 'AWS::CDK::Metadata' && (r.Condition === undefined || conditions[r.Condition]),
  );
  const plainScope: Scope = { parameters, pseudo, conditions, resourceName: () => undefined };
  const names: Record<string, string> = {};
  for (const [id, resource] of present) {
    const name = canonicalName(resource, plainScope, template);
    if (Object.values(names).includes(name)) throw new Error(`two resources are ${name}`);
    names[id] = name;
  }
  const scope: Scope = { parameters, pseudo, conditions, resourceName: (id) => names[id] };

  const resources: Record<string, Json> = {};
  for (const [id, resource] of present) {
    const dependsOn = new Set<string>([resource.DependsOn ?? []].flat().map((d: string) => names[d]));
    JSON.stringify(evaluate(resource.Properties, scope), (_k, v) => {
      if (typeof v === 'string') for (const m of v.matchAll(/<([^>.]+)(\.[^>]*)?>/g)) dependsOn.add(m[1]);
      return v;
    });
    resources[names[id]] = {
      Properties: normalise(names[id], evaluate(resource.Properties, scope)),
      DeletionPolicy: resource.DeletionPolicy ?? 'Delete',
      UpdateReplacePolicy: resource.UpdateReplacePolicy ?? 'Delete',
      DependsOn: [...dependsOn].sort(),
    };
  }
  const roleId = Object.keys(names).find((id) => names[id] === 'Role')!;
  const providerRoleId = Object.keys(names).find((id) => names[id] === 'ProviderRole');
  const outputs: Record<string, Json> = {};
  for (const [name, output] of Object.entries<Json>(template.Outputs ?? {})) {
    if (output.Condition !== undefined && !conditions[output.Condition]) continue;
    outputs[name] = { Description: output.Description, Value: normalise('Output', evaluate(output.Value, scope)) };
  }
  return {
    resources,
    types: present.map(([, r]) => r.Type).sort(),
    grants: [
      ...grantLines(roleGrants(template, roleId, scope)),
      ...(providerRoleId ? grantLines(roleGrants(template, providerRoleId, scope)).map((g) => `provider: ${g}`) : []),
    ],
    outputs,
  };
}

/** Removes the fields that differ only by tool (listed at the top of this file). */
function normalise(name: string, properties: Json): Json {
  const p = JSON.parse(JSON.stringify(properties, (_k, v) => (typeof v === 'number' ? String(v) : v)));
  if (p === null || typeof p !== 'object') return p;
  switch (name) {
    case 'Function':
    case 'ProviderFunction':
      delete p.Code;
      delete p.Tags;
      break;
    case 'Rule':
      p.State = p.State ?? 'ENABLED';
      for (const target of p.Targets ?? []) delete target.Id;
      break;
    case 'Permission:events.amazonaws.com':
      // CDK names the function by ARN, SAM by name: the same function either way.
      if (p.FunctionName === '<Function.Arn>') p.FunctionName = '<Function>';
      break;
    case 'Policy':
    case 'ProviderPolicy':
      delete p.PolicyName;
      delete p.PolicyDocument; // compared as (action, resource) pairs
      break;
  }
  return p;
}

describe('CDK and SAM parity', () => {
  const sam = samTemplate();

  test('the CDK context keys and the SAM parameters are the same inputs', () => {
    const contextKeys = Object.keys(exampleContext()).filter((k) => !CDK_ONLY_KEYS.includes(k));
    expect(contextKeys.map(samParameterName).sort()).toEqual(Object.keys(sam.Parameters).sort());
  });

  test.each(CONFIGURATIONS)('with %s, both deploy the same resources and permissions', (_name, overrides) => {
    const context = { ...exampleContext(), ...overrides };
    const cdk = evaluateTemplate(synth(overrides).template.toJSON() as CfnTemplate, {}, STACK_NAME);
    const samEvaluated = evaluateTemplate(sam, samParameters(sam, context), STACK_NAME);

    if (overrides.eventSourceProvider) {
      // The provider is compared too: its function, role, policy, log group and grants.
      expect(Object.keys(cdk.resources)).toEqual(expect.arrayContaining(['ProviderFunction', 'ProviderRole', 'ProviderPolicy', 'ProviderLogGroup']));
      expect(cdk.grants.filter((g) => g.startsWith('provider: '))).toContainEqual(expect.stringMatching(/^provider: lambda:GetFunction /));
    }
    if (overrides.alarms) {
      const alarms = ['Alarm:AsyncEventsDropped', 'Alarm:Errors', 'Alarm:Invocations', 'Alarm:MappingsDisabled', 'Alarm:Throttles', 'MetricFilter'];
      if (overrides.offsetLagAlarmThreshold !== undefined) alarms.push('Alarm:expression');
      expect(Object.keys(cdk.resources).filter((n) => n.startsWith('Alarm') || n === 'MetricFilter').sort()).toEqual(alarms.sort());
    }
    expect(samEvaluated.grants).toEqual(cdk.grants);
    expect(samEvaluated.types).toEqual(cdk.types);
    expect(Object.keys(samEvaluated.resources).sort()).toEqual(Object.keys(cdk.resources).sort());
    for (const name of Object.keys(cdk.resources)) {
      expect({ [name]: samEvaluated.resources[name] }).toEqual({ [name]: cdk.resources[name] });
    }
    expect(samEvaluated.outputs).toEqual(cdk.outputs);
  });

  test('the comparison notices a difference', () => {
    const cdk = evaluateTemplate(synth().template.toJSON() as CfnTemplate, {}, STACK_NAME);
    const evaluateChanged = (change: (template: Json) => void) => {
      const changed = JSON.parse(JSON.stringify(sam));
      change(changed);
      return evaluateTemplate(changed, samParameters(sam, exampleContext()), STACK_NAME);
    };
    const ofType = (template: Json, type: string) => Object.values<Json>(template.Resources).find((r) => r.Type === type);

    const pollerPolicy = (template: Json) =>
      Object.values<Json>(template.Resources).find((r) => r.Type === 'AWS::IAM::Policy' && r.Properties.PolicyName === 'kafka-esm-poller');
    const extraAction = evaluateChanged((t) => pollerPolicy(t).Properties.PolicyDocument.Statement[0].Action.push('dynamodb:BatchWriteItem'));
    expect(extraAction.grants).not.toEqual(cdk.grants);
    const slowerSchedule = evaluateChanged((t) => (ofType(t, 'AWS::Events::Rule').Properties.ScheduleExpression = 'rate(5 minutes)'));
    expect(slowerSchedule.resources.Rule).not.toEqual(cdk.resources.Rule);
    const noPolicyDependency = evaluateChanged((t) => delete Object.values<Json>(t.Resources).find(
      (r) => r.Type === 'AWS::Lambda::Function' && r.Properties.Description?.includes('poller')).DependsOn);
    expect(noPolicyDependency.resources.Function).not.toEqual(cdk.resources.Function);
  });

  (TRANSLATED_PATH ? test : test.skip)('the hand expansion of AWS::Serverless::Function is what SAM makes', () => {
    const byHand = expandServerless(loadYamlTemplate(TEMPLATE_PATH));
    const translated = JSON.parse(fs.readFileSync(TRANSLATED_PATH!, 'utf8'));
    expect(Object.keys(byHand.Resources).sort()).toEqual(Object.keys(translated.Resources).sort());
    for (const id of idsOfType(translated, 'AWS::Lambda::Function')
      .concat(idsOfType(translated, 'AWS::Events::Rule'), idsOfType(translated, 'AWS::Lambda::Permission'))) {
      expect({ [id]: byHand.Resources[id] }).toEqual({ [id]: translated.Resources[id] });
    }
  });
});
