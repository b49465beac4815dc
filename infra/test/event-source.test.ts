// Mappings declared with the construct: `fn.addEventSource(new KafkaEsmEventSource({...}))` becomes a
// Custom::KafkaEsmEventSource resource with AWS::Lambda::EventSourceMapping's property names, served
// by the Rust provider, with the grants the poller and the provider need for that function.
import { App, Aspects, CfnParameter, Duration, Stack, aws_ec2 as ec2, aws_lambda as lambda, aws_secretsmanager as secretsmanager, aws_sqs as sqs } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import { AwsSolutionsChecks } from 'cdk-nag';
import { AuthenticationMethod, KafkaEsmEventSource, SelfManagedKafkaEsmEventSource } from '../lib/event-source';
import { KafkaEsm } from '../lib/kafka-esm';
import { CfnTemplate } from './cfn';
import { ACCOUNT, REGION, fakeCodeDir, grantLines, idsOfType, roleGrants, cdkScope } from './helpers';

const CLUSTER = `arn:aws:kafka:${REGION}:${ACCOUNT}:cluster/orders/01234567-89ab-cdef-0123-456789abcdef-1`;

interface World {
  readonly app: App;
  readonly stack: Stack;
  readonly kafkaEsm: KafkaEsm;
  readonly consumer: lambda.Function;
}

function world(): World {
  const app = new App();
  const stack = new Stack(app, 'Mappings', { env: { account: ACCOUNT, region: REGION } });
  const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
    vpcId: 'vpc-0123456789abcdef0',
    availabilityZones: ['us-east-1a'],
    privateSubnetIds: ['subnet-0123456789abcdef0'],
  });
  const kafkaEsm = new KafkaEsm(stack, 'KafkaEsm', {
    eventSourceArn: CLUSTER,
    vpc,
    securityGroups: [ec2.SecurityGroup.fromSecurityGroupId(stack, 'Sg', 'sg-0123456789abcdef0')],
    codePath: fakeCodeDir(),
  });
  const consumer = new lambda.Function(stack, 'Consumer', {
    runtime: lambda.Runtime.NODEJS_22_X,
    handler: 'index.handler',
    code: lambda.Code.fromInline('exports.handler = async () => {};'),
  });
  return { app, stack, kafkaEsm, consumer };
}

function roleGrantLines(template: Template, description: RegExp): string[] {
  const json = template.toJSON() as CfnTemplate;
  const roleId = idsOfType(json, 'AWS::IAM::Role').find((id) => description.test(json.Resources[id].Properties.Description ?? ''))!;
  return grantLines(roleGrants(json, roleId, cdkScope(json)));
}

describe('KafkaEsmEventSource', () => {
  test('declares the mapping as a custom resource with the EventSourceMapping property names', () => {
    const { stack, kafkaEsm, consumer } = world();
    const source = new KafkaEsmEventSource({
      kafkaEsm,
      clusterArn: CLUSTER,
      topic: 'orders',
      startingPosition: lambda.StartingPosition.TRIM_HORIZON,
      batchSize: 50,
      maxBatchingWindow: Duration.seconds(2),
      consumerGroupId: 'orders-consumer',
      reportBatchItemFailures: true,
      retryAttempts: 3,
    });
    consumer.addEventSource(source);
    const template = Template.fromStack(stack);
    const json = template.toJSON() as CfnTemplate;
    const consumerId = idsOfType(json, 'AWS::Lambda::Function').find((id) => json.Resources[id].Properties.Runtime === 'nodejs22.x')!;
    const providerId = idsOfType(json, 'AWS::Lambda::Function').find((id) =>
      /Custom::KafkaEsmEventSource provider/.test(json.Resources[id].Properties.Description ?? ''))!;

    const mappings = template.findResources('Custom::KafkaEsmEventSource');
    expect(Object.values(mappings)).toHaveLength(1);
    const mapping = Object.values(mappings)[0];
    expect(mapping.Properties).toEqual({
      ServiceToken: { 'Fn::GetAtt': [providerId, 'Arn'] },
      FunctionName: { 'Fn::GetAtt': [consumerId, 'Arn'] },
      EventSourceArn: CLUSTER,
      Topics: ['orders'],
      StartingPosition: 'TRIM_HORIZON',
      BatchSize: 50,
      MaximumBatchingWindowInSeconds: 2,
      AmazonManagedKafkaEventSourceConfig: { ConsumerGroupId: 'orders-consumer' },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      MaximumRetryAttempts: 3,
    });
    // Created after the poller's grants, deleted before them.
    expect(mapping.DependsOn).toEqual(expect.arrayContaining([expect.stringMatching(/^KafkaEsmRole/)]));
    expect(mapping.DeletionPolicy).toBe('Delete');
    expect(source.eventSourceMappingId).toBeDefined();

    // The poller may invoke the function (by reference, no deploy-time list); the provider may
    // resolve it; the provider writes only the mappings table.
    const consumerArn = `<${consumerId}.Arn>`;
    expect(roleGrantLines(template, /^kafka-esm poller/)).toEqual(
      expect.arrayContaining([
        `lambda:InvokeFunction ${consumerArn}`,
        `lambda:InvokeFunction ${consumerArn}:*`,
        `lambda:GetFunction ${consumerArn}`,
        `lambda:GetFunction ${consumerArn}:*`,
      ]),
    );
    const mappingsTable = idsOfType(json, 'AWS::DynamoDB::Table').find(
      (id) => json.Resources[id].Properties.KeySchema[0].AttributeName === 'UUID',
    )!;
    const logGroup = idsOfType(json, 'AWS::Logs::LogGroup').find((id) => json.Resources[id].Properties.LogGroupName === undefined)!;
    expect(roleGrantLines(template, /provider/)).toEqual(
      [
        ...['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Scan'].map((a) => `${a} <${mappingsTable}.Arn>`),
        `lambda:GetFunction ${consumerArn}`,
        `lambda:GetFunction ${consumerArn}:*`,
        `logs:CreateLogStream <${logGroup}.Arn>`,
        `logs:PutLogEvents <${logGroup}.Arn>`,
      ].sort(),
    );
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('provider'),
      Environment: { Variables: { ESM_MAPPINGS_TABLE: { Ref: mappingsTable }, RUST_LOG: 'info' } },
      Architectures: ['arm64'],
    });
  });

  test('passes cdk-nag AwsSolutions with token function ARNs', () => {
    const { app, stack, kafkaEsm, consumer } = world();
    consumer.addEventSource(
      new KafkaEsmEventSource({ kafkaEsm, clusterArn: CLUSTER, topic: 'orders', startingPosition: lambda.StartingPosition.LATEST }),
    );
    // A second target, given as a parameter.
    kafkaEsm.grantInvokeTarget(lambda.Function.fromFunctionArn(stack, 'Other', new CfnParameter(stack, 'OtherArn').valueAsString));
    Aspects.of(app).add(new AwsSolutionsChecks());
    app.synth();
    // Findings on kafka-esm's resources (the test's own consumer function is not ours).
    const errors = Annotations.fromStack(stack)
      .findError('*', Match.stringLikeRegexp('AwsSolutions-'))
      .filter((e) => e.id.startsWith('/Mappings/KafkaEsm/'));
    expect(errors.map((e) => `${e.id}: ${String(e.entry.data).split('\n')[0]}`)).toEqual([]);
  });

  test("sends failed batches to onFailure: the destination in DestinationConfig, aws-cdk's grants on the poller", () => {
    const { stack, kafkaEsm, consumer } = world();
    const dlq = new sqs.Queue(stack, 'Failed', { enforceSSL: true });
    consumer.addEventSource(
      new KafkaEsmEventSource({
        kafkaEsm, clusterArn: CLUSTER, topic: 'orders', startingPosition: lambda.StartingPosition.LATEST, onFailure: new SqsDlq(dlq),
      }),
    );
    const template = Template.fromStack(stack);
    const queueId = Object.keys(template.findResources('AWS::SQS::Queue')).find((id) => id.startsWith('Failed'))!;
    template.hasResourceProperties('Custom::KafkaEsmEventSource', {
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queueId, 'Arn'] } } },
    });
    expect(roleGrantLines(template, /^kafka-esm poller/)).toContain(`sqs:SendMessage <${queueId}.Arn>`);
    // Not the consumer: the poller sends to the destination.
    const consumerRole = Object.keys(template.findResources('AWS::IAM::Role')).find((id) => id.startsWith('ConsumerServiceRole'))!;
    const consumerPolicies = Object.values(template.findResources('AWS::IAM::Policy')).filter((p) =>
      p.Properties.Roles.some((r: { Ref?: string }) => r.Ref === consumerRole));
    expect(JSON.stringify(consumerPolicies)).not.toContain('sqs:');
  });

  test('grants the poller its secret and keeps the SCRAM configuration', () => {
    const { stack, kafkaEsm, consumer } = world();
    const secret = new secretsmanager.Secret(stack, 'Scram', { secretName: 'AmazonMSK_orders' });
    consumer.addEventSource(
      new KafkaEsmEventSource({ kafkaEsm, clusterArn: CLUSTER, topic: 'orders', startingPosition: lambda.StartingPosition.LATEST, secret }),
    );
    const template = Template.fromStack(stack);
    const secretId = Object.keys(template.findResources('AWS::SecretsManager::Secret'))[0];
    template.hasResourceProperties('Custom::KafkaEsmEventSource', {
      SourceAccessConfigurations: [{ Type: 'SASL_SCRAM_512_AUTH', URI: { Ref: secretId } }],
    });
    expect(roleGrantLines(template, /^kafka-esm poller/)).toContain(`secretsmanager:GetSecretValue <${secretId}>`);
  });

  test.each([
    [{ batchSize: 10001 }, /Maximum batch size must be between 1 and 10000 inclusive/],
    [{ maxBatchingWindow: Duration.minutes(6) }, /maxBatchingWindow cannot be over 300 seconds/],
    [{ startingPosition: lambda.StartingPosition.AT_TIMESTAMP }, /startingPositionTimestamp must be provided/],
    [{ startingPositionTimestamp: 1700000000 }, /startingPositionTimestamp can only be used when startingPosition is AT_TIMESTAMP/],
    [{ consumerGroupId: 'bad group' }, /consumerGroupId contains invalid characters/],
    [{ retryAttempts: 10001 }, /retryAttempts must be between -1 and 10000/],
    [{ maxRecordAge: Duration.seconds(30) }, /maxRecordAge must be between 60 seconds and 7 days/],
    [{ clusterArn: 'arn:aws:kafka:us-east-1:123456789012:topic/x' }, /clusterArn must be an MSK cluster ARN/],
  ])('validates like aws-cdk: %o', (props, message) => {
    const { kafkaEsm } = world();
    expect(
      () =>
        new KafkaEsmEventSource({
          kafkaEsm,
          clusterArn: CLUSTER,
          topic: 'orders',
          startingPosition: lambda.StartingPosition.LATEST,
          ...props,
        }),
    ).toThrow(message);
  });
});

describe('SelfManagedKafkaEsmEventSource', () => {
  test('names the brokers, the authentication and the root CA', () => {
    const { stack, kafkaEsm, consumer } = world();
    const secret = new secretsmanager.Secret(stack, 'Basic');
    const ca = new secretsmanager.Secret(stack, 'RootCa');
    consumer.addEventSource(
      new SelfManagedKafkaEsmEventSource({
        kafkaEsm,
        bootstrapServers: ['b-1.example.com:9096', 'b-2.example.com:9096'],
        topic: 'payments',
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        secret,
        authenticationMethod: AuthenticationMethod.BASIC_AUTH,
        rootCACertificate: ca,
      }),
    );
    const template = Template.fromStack(stack);
    const [secretId, caId] = ['Basic', 'RootCa'].map((name) =>
      Object.keys(template.findResources('AWS::SecretsManager::Secret')).find((id) => id.startsWith(name))!);
    template.hasResourceProperties('Custom::KafkaEsmEventSource', {
      SelfManagedEventSource: { Endpoints: { KAFKA_BOOTSTRAP_SERVERS: ['b-1.example.com:9096', 'b-2.example.com:9096'] } },
      Topics: ['payments'],
      SourceAccessConfigurations: [
        { Type: 'BASIC_AUTH', URI: { Ref: secretId } },
        { Type: 'SERVER_ROOT_CA_CERTIFICATE', URI: { Ref: caId } },
      ],
      EventSourceArn: Match.absent(),
    });
    expect(roleGrantLines(template, /^kafka-esm poller/)).toEqual(
      expect.arrayContaining([`secretsmanager:GetSecretValue <${secretId}>`, `secretsmanager:GetSecretValue <${caId}>`]),
    );
  });

  test('refuses an authentication method without a secret, and no brokers', () => {
    const { kafkaEsm } = world();
    const base = { kafkaEsm, topic: 't', startingPosition: lambda.StartingPosition.LATEST };
    expect(() => new SelfManagedKafkaEsmEventSource({ ...base, bootstrapServers: [] })).toThrow(/at least one broker/);
    expect(
      () => new SelfManagedKafkaEsmEventSource({ ...base, bootstrapServers: ['b:9092'], authenticationMethod: AuthenticationMethod.BASIC_AUTH }),
    ).toThrow(/needs a secret/);
  });
});
