import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Duration, RemovalPolicy, Stack, aws_ec2 as ec2, aws_sns as sns } from 'aws-cdk-lib';
import * as childProcess from 'child_process';
// The build at synthesis is observed, not run (it takes minutes).
jest.mock('child_process', () => ({ ...jest.requireActual('child_process'), execFileSync: jest.fn() }));
import { Match, Template } from 'aws-cdk-lib/assertions';
import {
  DEFAULT_DRAIN_TIMEOUT, HANDOVER_SLACK, KafkaEsm, KafkaEsmProps, MIN_POLL_TIME, REPO_ROOT, elfArchitecture,
} from '../lib/kafka-esm';
import { CfnTemplate, loadYamlTemplate } from './cfn';
import {
  ACCOUNT, REGION, STACK_NAME, cdkScope, elfHeader, exampleContext, fakeCodeDir, grantLines, idsOfType, roleGrants, synth,
} from './helpers';

const CLUSTER = exampleContext().clusterArn as string;
const TARGET = (exampleContext().targetFunctionArns as string[])[0];
const FUNCTION_NAME = `${STACK_NAME}-poller`;
const SECRET = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:AmazonMSK_kafka-esm-AbCdEf`;
const KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/11111111-2222-3333-4444-555555555555`;
// Written out rather than imported from the construct, so a change there has to change the tests.
// What the poller calls (src/aws/mappings.rs, src/aws/leases.rs): no Query, no DescribeTable, and
// no PutItem on mappings (whole mapping items are written by esm and the custom resource only).
const MAPPINGS_ACTIONS = ['dynamodb:Scan', 'dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'];
const LEASES_ACTIONS = ['dynamodb:Scan', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'];
const NETWORK_INTERFACE_ACTIONS = [
  'ec2:CreateNetworkInterface', 'ec2:DeleteNetworkInterface', 'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSecurityGroups', 'ec2:DescribeSubnets', 'ec2:DescribeVpcs',
];
const ALL_OPTIONS = { iamAuthentication: true, secretArns: [SECRET], secretKmsKeyArns: [KEY], vpcEndpoints: true };

function only<T>(items: T[]): T {
  expect(items).toHaveLength(1);
  return items[0];
}

function grantsOf(template: Template) {
  const json = template.toJSON() as CfnTemplate;
  const roleId = only(idsOfType(json, 'AWS::IAM::Role'));
  return { json, roleId, grants: roleGrants(json, roleId, cdkScope(json)) };
}

describe('poller role', () => {
  test('has exactly the listed actions, each on exactly the named resources', () => {
    const { json, grants } = grantsOf(synth().template);
    const [mappings] = idsOfType(json, 'AWS::DynamoDB::Table').filter(
      (id) => json.Resources[id].Properties.KeySchema[0].AttributeName === 'UUID',
    );
    const [leases] = idsOfType(json, 'AWS::DynamoDB::Table').filter(
      (id) => json.Resources[id].Properties.KeySchema[0].AttributeName === 'LeaseKey',
    );
    const logGroup = only(idsOfType(json, 'AWS::Logs::LogGroup'));
    const logGroupArn = `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/aws/lambda/${FUNCTION_NAME}`;

    expect(grantLines(grants)).toEqual(
      [
        ...MAPPINGS_ACTIONS.map((a) => `${a} <${mappings}.Arn>`),
        ...LEASES_ACTIONS.map((a) => `${a} <${leases}.Arn>`),
        `kafka:DescribeClusterV2 ${CLUSTER}`,
        `kafka:GetBootstrapBrokers ${CLUSTER}`,
        ...NETWORK_INTERFACE_ACTIONS.map((a) => `${a} *`),
        ...['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents'].flatMap((a) => [
          `${a} <${logGroup}.Arn>`,
          `${a} ${logGroupArn}`,
        ]),
        `lambda:InvokeFunction ${TARGET}`,
        `lambda:InvokeFunction ${TARGET}:*`,
        `lambda:GetFunction ${TARGET}`,
        `lambda:GetFunction ${TARGET}:*`,
        `lambda:InvokeFunction arn:aws:lambda:${REGION}:${ACCOUNT}:function:${FUNCTION_NAME}`,
        `sqs:SendMessage <${only(idsOfType(json, 'AWS::SQS::Queue'))}.Arn>`,
      ].sort(),
    );
  });

  test('adds only the IAM-auth, secret and key actions when they are asked for', () => {
    const base = new Set(grantLines(grantsOf(synth().template).grants));
    const added = grantLines(grantsOf(synth(ALL_OPTIONS).template).grants).filter((l) => !base.has(l));
    const [prefix, nameAndUuid] = CLUSTER.split(':cluster/');
    expect(added).toEqual(
      [
        `kafka-cluster:Connect ${CLUSTER}`,
        `kafka-cluster:DescribeTopic ${prefix}:topic/${nameAndUuid}/*`,
        `kafka-cluster:ReadData ${prefix}:topic/${nameAndUuid}/*`,
        `kafka-cluster:DescribeGroup ${prefix}:group/${nameAndUuid}/*`,
        `kafka-cluster:AlterGroup ${prefix}:group/${nameAndUuid}/*`,
        `secretsmanager:GetSecretValue ${SECRET}`,
        `kms:Decrypt ${KEY}`,
      ].sort(),
    );
  });

  test('uses "*" only for the six network-interface actions, and only those use it', () => {
    const { grants } = grantsOf(synth(ALL_OPTIONS).template);
    const onStar = grants.filter((g) => g.resource === '*').map((g) => g.action);
    expect([...new Set(onStar)].sort()).toEqual([...NETWORK_INTERFACE_ACTIONS].sort());
    for (const grant of grants.filter((g) => g.action.startsWith('ec2:'))) {
      expect(grant.resource).toBe('*');
    }
    // The remaining wildcards are suffixes under a named function, topic or group prefix.
    for (const grant of grants.filter((g) => g.resource !== '*' && g.resource.includes('*'))) {
      expect(grant.resource).toMatch(/^(arn:aws:lambda:.+:function:[^:*]+:\*|arn:aws:kafka:.+:(topic|group)\/[^*]+\/\*)$/);
    }
  });

  test('may send to the on-failure destinations it is given, and to no others', () => {
    const queue = `arn:aws:sqs:${REGION}:${ACCOUNT}:failed`;
    const topic = `arn:aws:sns:${REGION}:${ACCOUNT}:failed`;
    const bucket = 'arn:aws:s3:::failed-batches';
    const base = new Set(grantLines(grantsOf(synth().template).grants));
    const added = grantLines(
      grantsOf(synth({ onFailureQueueArns: [queue], onFailureTopicArns: [topic], onFailureBucketArns: [bucket] }).template).grants,
    ).filter((l) => !base.has(l));
    expect(added).toEqual([`s3:PutObject ${bucket}/*`, `sns:Publish ${topic}`, `sqs:GetQueueUrl ${queue}`, `sqs:SendMessage ${queue}`]);
  });

  test('for self-managed Kafka (no cluster ARN) has no MSK permissions', () => {
    const msk = grantLines(grantsOf(synth({ iamAuthentication: true }).template).grants);
    const selfManaged = grantLines(grantsOf(Template.fromStack(constructStack({ eventSourceArn: undefined, iamAuthentication: true }))).grants);
    expect(msk.filter((l) => l.startsWith('kafka'))).toHaveLength(7);
    expect(selfManaged.filter((l) => l.startsWith('kafka'))).toEqual([]);
  });

  test('is bounded by the permissions boundary when one is given', () => {
    const boundary = `arn:aws:iam::${ACCOUNT}:policy/team-boundary`;
    const { json, roleId } = grantsOf(synth({ permissionsBoundaryArn: boundary }).template);
    expect(json.Resources[roleId].Properties.PermissionsBoundary).toBe(boundary);
    expect(grantsOf(synth().template).json.Resources[roleId].Properties.PermissionsBoundary).toBeUndefined();
  });

  test('is the only role, with no managed policies and only Lambda trusted', () => {
    const { json, roleId } = grantsOf(synth(ALL_OPTIONS).template);
    const role = json.Resources[roleId].Properties;
    expect(role.ManagedPolicyArns).toBeUndefined();
    expect(role.AssumeRolePolicyDocument.Statement).toEqual([
      { Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' } },
    ]);
    expect(idsOfType(json, 'AWS::IAM::ManagedPolicy')).toEqual([]);
    expect(idsOfType(json, 'AWS::IAM::Policy')).toHaveLength(1);
  });
});

describe('tables', () => {
  test.each([
    ['UUID'],
    ['LeaseKey'],
  ])('the %s table is on-demand, has point-in-time recovery and is retained', (key) => {
    synth().template.hasResource('AWS::DynamoDB::Table', {
      Properties: {
        KeySchema: [{ AttributeName: key, KeyType: 'HASH' }],
        AttributeDefinitions: [{ AttributeName: key, AttributeType: 'S' }],
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      },
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });

  test('there are exactly two, with no sort key, streams, TTL or indexes', () => {
    const tables = synth().template.findResources('AWS::DynamoDB::Table');
    expect(Object.keys(tables)).toHaveLength(2);
    for (const table of Object.values(tables)) {
      expect(table.Properties.KeySchema).toHaveLength(1);
      for (const key of ['StreamSpecification', 'TimeToLiveSpecification', 'GlobalSecondaryIndexes', 'LocalSecondaryIndexes']) {
        expect(table.Properties[key]).toBeUndefined();
      }
    }
  });

  test('removal policy is configurable', () => {
    const template = Template.fromStack(constructStack({ tableRemovalPolicy: RemovalPolicy.DESTROY }));
    const tables = Object.values(template.findResources('AWS::DynamoDB::Table'));
    expect(tables).toHaveLength(2);
    for (const table of tables) expect(table.DeletionPolicy).toBe('Delete');
  });
});

describe('poller function', () => {
  test('runs bootstrap on provided.al2023, arm64 by default, with the default sizes', () => {
    synth().template.hasResourceProperties('AWS::Lambda::Function', {
      FunctionName: FUNCTION_NAME,
      Runtime: 'provided.al2023',
      Handler: 'bootstrap',
      Architectures: ['arm64'],
      Timeout: 300,
      MemorySize: 512,
      // 10 pollers, the successor of a relaying one, and the schedule's start.
      ReservedConcurrentExecutions: 12,
    });
  });

  test('switches to x86_64', () => {
    synth({ architecture: 'x86_64' }).template.hasResourceProperties('AWS::Lambda::Function', {
      Architectures: ['x86_64'],
    });
    expect(() => synth({ architecture: 'sparc' })).toThrow(/architecture must be arm64 or x86_64/);
  });

  test('has exactly the poller environment', () => {
    const { template } = synth();
    const json = template.toJSON() as CfnTemplate;
    const tableOf = (key: string) =>
      only(idsOfType(json, 'AWS::DynamoDB::Table').filter((id) => json.Resources[id].Properties.KeySchema[0].AttributeName === key));
    const fn = Object.values(template.findResources('AWS::Lambda::Function'))[0];
    expect(fn.Properties.Environment.Variables).toEqual({
      ESM_MAPPINGS_TABLE: { Ref: tableOf('UUID') },
      ESM_LEASES_TABLE: { Ref: tableOf('LeaseKey') },
      ESM_POLLER_FUNCTION: FUNCTION_NAME,
      ESM_MAX_POLLERS: '10',
      ESM_DRAIN_TIMEOUT_MS: '30000',
      RUST_LOG: 'info',
    });
  });

  test('reserved concurrency leaves room for the relay and the schedule, and can be left out', () => {
    synth({ maximumPollers: 25 }).template.hasResourceProperties('AWS::Lambda::Function', {
      ReservedConcurrentExecutions: 27,
      Environment: { Variables: Match.objectLike({ ESM_MAX_POLLERS: '25' }) },
    });
    const fn = Object.values(synth({ reserveConcurrency: false }).template.findResources('AWS::Lambda::Function'))[0];
    expect(fn.Properties.ReservedConcurrentExecutions).toBeUndefined();
    expect(fn.Properties.Environment.Variables.ESM_MAX_POLLERS).toBe('10');
  });

  test("the poller's own async invokes are not retried, expire after a minute and land in the queue when dropped", () => {
    const { template } = synth();
    const json = template.toJSON() as CfnTemplate;
    const fn = only(idsOfType(json, 'AWS::Lambda::Function'));
    const queue = only(idsOfType(json, 'AWS::SQS::Queue'));
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: fn },
      Qualifier: '$LATEST',
      MaximumEventAgeInSeconds: 60,
      MaximumRetryAttempts: 0,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queue, 'Arn'] } } },
    });
    expect(json.Resources[queue].Properties).toEqual({ MessageRetentionPeriod: 1209600, SqsManagedSseEnabled: true });
  });

  test('the drain timeout is passed on and the timeout must cover the stop margin and a minute of polling', () => {
    synth({ drainTimeoutSeconds: 50, timeoutSeconds: 120 }).template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ ESM_DRAIN_TIMEOUT_MS: '50000' }) },
    });
    // 50 s drain + 10 s to commit and release + 60 s polling = 120 s.
    expect(() => synth({ drainTimeoutSeconds: 51, timeoutSeconds: 120 })).toThrow(/timeout \(2 minutes\) must be at least the stop margin/);
    expect(() => constructStack({ timeout: Duration.seconds(99) })).toThrow(/stop margin/);
    expect(() => constructStack({ timeout: Duration.seconds(100) })).not.toThrow();
  });

  test('runs in the cluster subnets with the given security group', () => {
    const context = exampleContext();
    synth().template.hasResourceProperties('AWS::Lambda::Function', {
      VpcConfig: { SubnetIds: context.subnetIds, SecurityGroupIds: [context.securityGroupId] },
    });
  });

  test('logs to its own log group with one month retention', () => {
    const { template } = synth();
    const json = template.toJSON() as CfnTemplate;
    const logGroup = only(idsOfType(json, 'AWS::Logs::LogGroup'));
    expect(json.Resources[logGroup].Properties).toEqual({
      LogGroupName: `/aws/lambda/${FUNCTION_NAME}`,
      RetentionInDays: 30,
    });
    template.hasResourceProperties('AWS::Lambda::Function', { LoggingConfig: { LogGroup: { Ref: logGroup } } });
    // No LogRetention custom resource, and no event source provider unless asked for.
    expect(idsOfType(json, 'AWS::Lambda::Function')).toHaveLength(1);
    expect(idsOfType(json, 'Custom::LogRetention')).toEqual([]);
  });

  test('timeout, memory and retention are configurable; the timeout stops at 15 minutes', () => {
    synth({ timeoutSeconds: 900, memorySize: 1024, logRetentionDays: 7 }).template.hasResourceProperties(
      'AWS::Lambda::Function',
      { Timeout: 900, MemorySize: 1024 },
    );
    synth({ logRetentionDays: 7 }).template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    expect(() => constructStack({ timeout: Duration.minutes(16) })).toThrow(/at most 15 minutes/);
  });

  test('packages a prebuilt bootstrap only when it is an executable for the architecture', () => {
    expect(() => synth()).not.toThrow();
    expect(() => synth({ architecture: 'x86_64' })).not.toThrow();
    const missing = fs.mkdtempSync(path.join(os.tmpdir(), 'kafka-esm-no-build-'));
    expect(() => synth({ codePath: missing })).toThrow(/No bootstrap at .*poller\/bootstrap: build it with scripts\/build-lambda.sh arm64/);
    expect(() => synth({ codePath: fakeCodeDir('x86_64') })).toThrow(/built for x86_64, but the function is arm64/);
    expect(() => synth({ architecture: 'x86_64', codePath: fakeCodeDir('arm64') })).toThrow(/built for arm64, but the function is x86_64/);
    const script = fs.mkdtempSync(path.join(os.tmpdir(), 'kafka-esm-script-'));
    fs.mkdirSync(path.join(script, 'poller'));
    fs.writeFileSync(path.join(script, 'poller', 'bootstrap'), '#!/bin/sh\necho not a build\n', { mode: 0o755 });
    expect(() => synth({ codePath: script })).toThrow(/not a 64-bit ELF executable/);
  });

  test('reads the architecture from the ELF header', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kafka-esm-elf-'));
    const write = (name: string, bytes: Buffer) => {
      fs.writeFileSync(path.join(dir, name), bytes);
      return path.join(dir, name);
    };
    expect(elfArchitecture(write('arm', elfHeader(183)))).toBe('arm64');
    expect(elfArchitecture(write('x86', elfHeader(62)))).toBe('x86_64');
    expect(elfArchitecture(write('riscv', elfHeader(243)))).toBeUndefined();
    const bigEndian = elfHeader(183);
    bigEndian[5] = 2;
    expect(elfArchitecture(write('be', bigEndian))).toBeUndefined();
    expect(elfArchitecture(write('short', Buffer.from('\x7fELF', 'latin1')))).toBeUndefined();
  });

  test('without codePath, synthesis builds with scripts/build-lambda.sh and fails when the build fails', () => {
    const calls: string[][] = [];
    const spy = jest.mocked(childProcess.execFileSync).mockImplementation(((file: string, args: string[]) => {
      calls.push([file, ...args]);
      throw new Error('cargo lambda build failed');
    }) as unknown as typeof childProcess.execFileSync);
    try {
      const app = new App({ context: { 'aws:cdk:bundling-stacks': ['**'] } });
      const stack = new Stack(app, 'Build', { env: { account: ACCOUNT, region: REGION } });
      expect(() => new KafkaEsm(stack, 'KafkaEsm', { ...baseProps(stack), codePath: undefined })).toThrow(/cargo lambda build failed/);
      expect(calls).toEqual([['bash', path.join(REPO_ROOT, 'scripts', 'build-lambda.sh'), 'arm64']]);
    } finally {
      spy.mockRestore();
    }
  });

  test('the defaults agree with the poller (src/config.rs)', () => {
    const config = fs.readFileSync(path.join(REPO_ROOT, 'src', 'config.rs'), 'utf8');
    const drainMs = Number(/name: "ESM_DRAIN_TIMEOUT_MS",\s*default: "(\d+)"/.exec(config)![1]);
    const slackS = Number(/pub const HANDOVER_SLACK: Duration = Duration::from_secs\((\d+)\)/.exec(config)![1]);
    expect(DEFAULT_DRAIN_TIMEOUT.toMilliseconds()).toBe(drainMs);
    expect(HANDOVER_SLACK.toSeconds()).toBe(slackS);
    // template.yaml: the same default, and every allowed drain timeout fits every allowed timeout.
    const sam = loadYamlTemplate(path.join(REPO_ROOT, 'template.yaml'));
    const drain = sam.Parameters.DrainTimeoutSeconds;
    expect(Number(drain.Default) * 1000).toBe(drainMs);
    expect(Number(sam.Parameters.TimeoutSeconds.MinValue)).toBeGreaterThanOrEqual(
      Number(drain.MaxValue) + slackS + MIN_POLL_TIME.toSeconds(),
    );
    expect(Number(sam.Parameters.TimeoutSeconds.Default)).toBe(300);
  });
});

describe('schedule', () => {
  test('starts the poller every minute', () => {
    const { template } = synth();
    const json = template.toJSON() as CfnTemplate;
    const fn = only(idsOfType(json, 'AWS::Lambda::Function'));
    const rule = only(idsOfType(json, 'AWS::Events::Rule'));
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fn, 'Arn'] } })],
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [rule, 'Arn'] },
    });
  });
});

describe('VPC endpoints', () => {
  test('are created on request: Lambda, MSK API and Secrets Manager (with secrets) interface endpoints and a DynamoDB gateway', () => {
    const context = exampleContext();
    const { template } = synth({ vpcEndpoints: true, secretArns: [SECRET] });
    for (const service of ['lambda', 'secretsmanager', 'kafka']) {
      template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
        ServiceName: `com.amazonaws.${REGION}.${service}`,
        VpcEndpointType: 'Interface',
        PrivateDnsEnabled: true,
        SubnetIds: context.subnetIds,
        VpcId: context.vpcId,
      });
    }
    template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
      VpcEndpointType: 'Gateway',
      RouteTableIds: context.routeTableIds,
    });
    template.resourceCountIs('AWS::EC2::VPCEndpoint', 4);
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      SecurityGroupIngress: [
        Match.objectLike({ IpProtocol: 'tcp', FromPort: 443, ToPort: 443, SourceSecurityGroupId: context.securityGroupId }),
      ],
    });
  });

  test('exclude STS always, Secrets Manager without secrets and the MSK API for self-managed Kafka', () => {
    const services = (template: Template) =>
      Object.values(template.findResources('AWS::EC2::VPCEndpoint'))
        .filter((e) => e.Properties.VpcEndpointType === 'Interface')
        .map((e) => String(e.Properties.ServiceName).split('.').pop())
        .sort();
    expect(services(synth({ vpcEndpoints: true }).template)).toEqual(['kafka', 'lambda']);
    expect(services(Template.fromStack(constructStack({ vpcEndpoints: true, eventSourceArn: undefined }, ['rtb-0123456789abcdef0'])))).toEqual(['lambda']);
  });

  test('refuse subnets without route tables instead of synthesising a broken gateway endpoint', () => {
    expect(() => synth({ vpcEndpoints: true, routeTableIds: [] })).toThrow(/vpcEndpoints needs the route tables/);
    expect(() => synth({ routeTableIds: ['rtb-0123456789abcdef0'] })).toThrow(/route table of each of the 2 subnets/);
    expect(() => synth({ vpcEndpoints: false, routeTableIds: [] })).not.toThrow();
  });

  test('are not created by default', () => {
    const { template } = synth({ vpcEndpoints: false });
    template.resourceCountIs('AWS::EC2::VPCEndpoint', 0);
    template.resourceCountIs('AWS::EC2::SecurityGroup', 0);
  });
});

describe('alarms and dashboard', () => {
  test('cost nothing by default: no alarm, dashboard or metric filter', () => {
    const template = Template.fromStack(constructStack({}));
    for (const type of ['AWS::CloudWatch::Alarm', 'AWS::CloudWatch::Dashboard', 'AWS::Logs::MetricFilter']) {
      template.resourceCountIs(type, 0);
    }
  });

  test('watch errors, throttles, dropped starts, missing pollers, disabled mappings and lag, and notify the topic', () => {
    const stack = new Stack(new App(), 'Alarms', { env: { account: ACCOUNT, region: REGION } });
    const topic = new sns.Topic(stack, 'Topic');
    const esm = new KafkaEsm(stack, 'KafkaEsm', {
      ...baseProps(stack), alarms: true, alarmTopic: topic, offsetLagAlarmThreshold: 5000, metricsNamespace: 'Orders',
    });
    const template = Template.fromStack(stack);
    expect(Object.keys(esm.alarms).sort()).toEqual(
      ['DroppedStarts', 'MappingDisabled', 'NoPollerRunning', 'OffsetLag', 'PollerErrors', 'PollerThrottles'],
    );
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties);
    expect(alarms).toHaveLength(6);
    const topicId = Object.keys(template.findResources('AWS::SNS::Topic'))[0];
    for (const alarm of alarms) expect(alarm.AlarmActions).toEqual([{ Ref: topicId }]);
    const byMetric = Object.fromEntries(alarms.map((a) => [a.MetricName ?? 'expression', a]));
    expect(Object.keys(byMetric).sort()).toEqual(['AsyncEventsDropped', 'Errors', 'Invocations', 'MappingsDisabled', 'Throttles', 'expression']);
    // Five minutes in a row without a start.
    expect(byMetric.Invocations).toMatchObject({ ComparisonOperator: 'LessThanThreshold', Threshold: 1, TreatMissingData: 'breaching', Period: 60, EvaluationPeriods: 5 });
    expect(byMetric.MappingsDisabled).toMatchObject({ Namespace: 'Orders', Threshold: 1 });
    expect(byMetric.expression.Metrics[0].Expression).toBe('SELECT MAX(OffsetLag) FROM SCHEMA("Orders", EventSourceMappingUUID)');
    expect(byMetric.expression).toMatchObject({ Threshold: 5000, EvaluationPeriods: 3, ComparisonOperator: 'GreaterThanThreshold' });
  });

  test("count the poller's own log line for a disabled mapping", () => {
    const stack = new Stack(new App(), 'Filter', { env: { account: ACCOUNT, region: REGION } });
    new KafkaEsm(stack, 'KafkaEsm', { ...baseProps(stack), alarms: true });
    const filter = Object.values(Template.fromStack(stack).findResources('AWS::Logs::MetricFilter'))[0].Properties;
    expect(filter.FilterPattern).toBe('{ $.fields.message = "Mapping disabled." }');
    expect(filter.MetricTransformations).toEqual([{ MetricName: 'MappingsDisabled', MetricNamespace: 'KafkaEsm', MetricValue: '1' }]);
    // The line the pattern matches: tracing's JSON output puts the message under `fields`.
    const supervisor = fs.readFileSync(path.join(REPO_ROOT, 'src', 'coordination', 'supervisor.rs'), 'utf8');
    expect(supervisor).toMatch(/warn!\([^;]*"Mapping disabled\."\)/);
    const poller = fs.readFileSync(path.join(REPO_ROOT, 'functions', 'poller', 'src', 'main.rs'), 'utf8');
    expect(poller).toMatch(/tracing_subscriber::fmt\(\)\s*\.json\(\)/);
  });

  test('a dashboard on request', () => {
    const stack = new Stack(new App(), 'Dashboard', { env: { account: ACCOUNT, region: REGION } });
    new KafkaEsm(stack, 'KafkaEsm', { ...baseProps(stack), dashboard: true });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    template.resourceCountIs('AWS::CloudWatch::Alarm', 0);
    const body = JSON.stringify(Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody);
    expect(body).toContain('OffsetLag');
  });
});

describe('outputs', () => {
  test('name both tables and the function', () => {
    const { template } = synth();
    const json = template.toJSON() as CfnTemplate;
    const fn = only(idsOfType(json, 'AWS::Lambda::Function'));
    const tables = idsOfType(json, 'AWS::DynamoDB::Table');
    const outputs = template.findOutputs('*');
    expect(Object.keys(outputs).sort()).toEqual([
      'DroppedStartsQueueUrl', 'LeasesTableName', 'MappingsTableName', 'PollerFunctionArn', 'PollerFunctionName', 'PollerRoleArn',
    ]);
    for (const output of Object.values(outputs)) expect(output.Description).toEqual(expect.any(String));
    expect(tables).toContainEqual(outputs.MappingsTableName.Value.Ref);
    expect(tables).toContainEqual(outputs.LeasesTableName.Value.Ref);
    expect(outputs.MappingsTableName.Value).not.toEqual(outputs.LeasesTableName.Value);
    expect(json.Resources[outputs.MappingsTableName.Value.Ref].Properties.KeySchema[0].AttributeName).toBe('UUID');
    expect(outputs.PollerFunctionName.Value).toEqual({ Ref: fn });
    expect(outputs.PollerFunctionArn.Value).toEqual({ 'Fn::GetAtt': [fn, 'Arn'] });
  });
});

describe('input validation', () => {
  test.each([
    [{ eventSourceArn: 'arn:aws:kafka:us-east-1:123456789012:topic/x/y/z' }, /eventSourceArn must be an MSK cluster ARN/],
    [{ functionArns: [`${TARGET}:live`] }, /unqualified function ARNs/],
    [{ maximumPollers: 0 }, /maximumPollers must be a positive integer/],
    [{ functionName: 'x'.repeat(65) }, /functionName must be 1-64/],
  ])('rejects %o', (props, message) => {
    expect(() => constructStack(props as Partial<KafkaEsmProps>)).toThrow(message);
  });
});

/** A stack holding just the construct, for props the example app does not expose. */
function constructStack(props: Partial<KafkaEsmProps>, routeTableIds?: string[]): Stack {
  const stack = new Stack(new App(), 'Construct', { env: { account: ACCOUNT, region: REGION } });
  new KafkaEsm(stack, 'KafkaEsm', { ...baseProps(stack, routeTableIds), ...props });
  return stack;
}

function baseProps(stack: Stack, routeTableIds?: string[]): KafkaEsmProps {
  const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
    vpcId: 'vpc-0123456789abcdef0',
    availabilityZones: ['us-east-1a'],
    privateSubnetIds: ['subnet-0123456789abcdef0'],
    privateSubnetRouteTableIds: routeTableIds,
  });
  return {
    eventSourceArn: CLUSTER,
    functionArns: [TARGET],
    vpc,
    securityGroups: [ec2.SecurityGroup.fromSecurityGroupId(stack, 'Sg', 'sg-0123456789abcdef0')],
    codePath: fakeCodeDir(),
  };
}
