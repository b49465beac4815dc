import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Duration, RemovalPolicy, Stack, aws_ec2 as ec2 } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { KafkaEsm, KafkaEsmProps } from '../lib/kafka-esm';
import { CfnTemplate } from './cfn';
import { ACCOUNT, REGION, STACK_NAME, cdkScope, exampleContext, fakeCodeDir, grantLines, idsOfType, roleGrants, synth } from './helpers';

const CLUSTER = exampleContext().clusterArn as string;
const TARGET = (exampleContext().targetFunctionArns as string[])[0];
const FUNCTION_NAME = `${STACK_NAME}-poller`;
const SECRET = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:AmazonMSK_kafka-esm-AbCdEf`;
const KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/11111111-2222-3333-4444-555555555555`;
// Written out rather than imported from the construct, so a change there has to change the tests.
const TABLE_ACTIONS = [
  'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem',
  'dynamodb:Query', 'dynamodb:Scan', 'dynamodb:DescribeTable',
];
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
        ...TABLE_ACTIONS.flatMap((a) => [`${a} <${mappings}.Arn>`, `${a} <${leases}.Arn>`]),
        `kafka:DescribeCluster ${CLUSTER}`,
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
      ReservedConcurrentExecutions: 10,
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
      RUST_LOG: 'info',
    });
  });

  test('reserved concurrency and ESM_MAX_POLLERS follow maximumPollers', () => {
    synth({ maximumPollers: 25 }).template.hasResourceProperties('AWS::Lambda::Function', {
      ReservedConcurrentExecutions: 25,
      Environment: { Variables: Match.objectLike({ ESM_MAX_POLLERS: '25' }) },
    });
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
    // No LogRetention custom resource (and so no second function).
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

  test('packages the build output when it exists, the labelled placeholder otherwise', () => {
    const built = synth();
    Annotations.fromStack(built.stack).hasNoWarning('*', Match.stringLikeRegexp('No poller binary'));
    const missing = fs.mkdtempSync(path.join(os.tmpdir(), 'kafka-esm-no-build-'));
    const placeholder = synth({ codePath: missing });
    Annotations.fromStack(placeholder.stack).hasWarning('*', Match.stringLikeRegexp('No poller binary.*placeholder'));
    const bootstrap = fs.readFileSync(path.join(__dirname, '..', 'assets', 'placeholder-poller', 'bootstrap'), 'utf8');
    expect(bootstrap).toMatch(/PLACEHOLDER, not the kafka-esm poller/);
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
  test('are created on request: four interface endpoints and a DynamoDB gateway', () => {
    const context = exampleContext();
    const { template } = synth({ vpcEndpoints: true });
    for (const service of ['lambda', 'sts', 'secretsmanager', 'kafka']) {
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
    template.resourceCountIs('AWS::EC2::VPCEndpoint', 5);
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      SecurityGroupIngress: [
        Match.objectLike({ IpProtocol: 'tcp', FromPort: 443, ToPort: 443, SourceSecurityGroupId: context.securityGroupId }),
      ],
    });
  });

  test('are not created by default', () => {
    const { template } = synth({ vpcEndpoints: false });
    template.resourceCountIs('AWS::EC2::VPCEndpoint', 0);
    template.resourceCountIs('AWS::EC2::SecurityGroup', 0);
  });
});

describe('outputs', () => {
  test('name both tables and the function', () => {
    const { template } = synth();
    const json = template.toJSON() as CfnTemplate;
    const fn = only(idsOfType(json, 'AWS::Lambda::Function'));
    const tables = idsOfType(json, 'AWS::DynamoDB::Table');
    const outputs = template.findOutputs('*');
    expect(Object.keys(outputs).sort()).toEqual(['LeasesTableName', 'MappingsTableName', 'PollerFunctionArn', 'PollerFunctionName']);
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
    [{ functionArns: [] }, /at least one target function/],
    [{ maximumPollers: 0 }, /maximumPollers must be a positive integer/],
    [{ functionName: 'x'.repeat(65) }, /functionName must be 1-64/],
  ])('rejects %o', (props, message) => {
    expect(() => constructStack(props as Partial<KafkaEsmProps>)).toThrow(message);
  });
});

/** A stack holding just the construct, for props the example app does not expose. */
function constructStack(props: Partial<KafkaEsmProps>): Stack {
  const stack = new Stack(new App(), 'Construct', { env: { account: ACCOUNT, region: REGION } });
  const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
    vpcId: 'vpc-0123456789abcdef0',
    availabilityZones: ['us-east-1a'],
    privateSubnetIds: ['subnet-0123456789abcdef0'],
  });
  new KafkaEsm(stack, 'KafkaEsm', {
    eventSourceArn: CLUSTER,
    functionArns: [TARGET],
    vpc,
    securityGroups: [ec2.SecurityGroup.fromSecurityGroupId(stack, 'Sg', 'sg-0123456789abcdef0')],
    codePath: fakeCodeDir(),
    ...props,
  });
  return stack;
}
