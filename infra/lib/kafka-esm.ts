import * as fs from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import {
  ArnFormat,
  AssetHashType,
  DockerImage,
  Duration,
  Fn,
  RemovalPolicy,
  Stack,
  Token,
  aws_dynamodb as dynamodb,
  aws_ec2 as ec2,
  aws_events as events,
  aws_events_targets as targets,
  aws_iam as iam,
  aws_lambda as lambda,
  aws_cloudwatch as cloudwatch,
  aws_cloudwatch_actions as cloudwatchActions,
  aws_logs as logs,
  aws_sns as sns,
  aws_sqs as sqs,
} from 'aws-cdk-lib';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { FUNCTION_QUALIFIER_WILDCARD, KafkaEsmEventSourceProvider, type KafkaEsmDeployment } from './event-source';

/** What the poller does with each target function: invoke it, and read its timeout. */
const TARGET_FUNCTION_ACTIONS = ['lambda:InvokeFunction', 'lambda:GetFunction'];

/** The repository root: `scripts/build-lambda.sh` and the Rust workspace. */
export const REPO_ROOT = path.join(__dirname, '..', '..');

/** Drain timeout of the poller when none is given: `ESM_DRAIN_TIMEOUT_MS`'s default in src/config.rs. */
export const DEFAULT_DRAIN_TIMEOUT = Duration.seconds(30);
/**
 * What a hand-over needs after the drain (src/config.rs `HANDOVER_SLACK`): the poller stops taking
 * batches `drainTimeout + HANDOVER_SLACK` before its deadline (`ESM_STOP_MARGIN_MS`, derived).
 */
export const HANDOVER_SLACK = Duration.seconds(10);
/** Least time a poller should spend polling in each invocation, beyond its stop margin. */
export const MIN_POLL_TIME = Duration.seconds(60);
/**
 * Concurrency beyond `maximumPollers` that the reserve leaves for the successor a poller starts
 * before it stops (relay) and for the schedule's start, so neither is throttled.
 */
export const RELAY_HEADROOM = 2;
/** How long Lambda keeps the poller's own asynchronous invokes (relay, scale-out, schedule) before dropping them. */
export const ASYNC_MAX_EVENT_AGE = Duration.seconds(60);

/**
 * DynamoDB actions of the poller, per table, and no others. Measured against src/aws: on the
 * mappings table it lists (Scan), reads one (GetItem), records status and results (UpdateItem)
 * and removes a deleted mapping (DeleteItem), and never writes a whole item (PutItem is the API's,
 * for `esm` and the custom resource); on the leases table it scans, takes (PutItem, UpdateItem)
 * and releases (DeleteItem), and reads and writes a capped mapping's concurrency grants (GetItem,
 * PutItem). No Query, no DescribeTable (`esm init` only), no batch calls.
 */
export const MAPPINGS_TABLE_ACTIONS = [
  'dynamodb:Scan',
  'dynamodb:GetItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
] as const;
export const LEASES_TABLE_ACTIONS = [
  'dynamodb:Scan',
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
] as const;

/**
 * The network-interface and VPC actions of the AWS managed policy `AWSLambdaMSKExecutionRole`
 * (and the seed's list). They are granted on `*` because EC2 does not support resource-level
 * permissions for the Describe* calls, and Lambda creates and deletes the function's ENIs in
 * subnets and security groups chosen at deploy time, before any ENI ARN exists.
 */
export const NETWORK_INTERFACE_ACTIONS = [
  'ec2:CreateNetworkInterface',
  'ec2:DeleteNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSecurityGroups',
  'ec2:DescribeSubnets',
  'ec2:DescribeVpcs',
] as const;

/** Properties of {@link KafkaEsm}. Names follow the Lambda event source mapping API where one applies. */
export interface KafkaEsmProps {
  /**
   * ARN of the MSK cluster the mappings read, as in the mapping's `EventSourceArn`
   * (`arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID`). The role may describe this cluster
   * (`kafka:DescribeClusterV2`, which also covers MSK Serverless, and `kafka:GetBootstrapBrokers`)
   * and, with {@link iamAuthentication}, connect to it; nothing else in MSK.
   *
   * @default - self-managed Kafka: no MSK permissions and no MSK API endpoint; the mappings name
   * their brokers (`SelfManagedEventSource`)
   */
  readonly eventSourceArn?: string;

  /**
   * Unqualified ARNs of the functions the mappings may invoke (the mapping's `FunctionArn`).
   * The role may invoke these functions and their versions and aliases (`ARN:*`). A
   * {@link KafkaEsmEventSource} adds its function itself.
   *
   * @default - none: only the functions of {@link KafkaEsmEventSource}s
   */
  readonly functionArns?: string[];

  /** The cluster's VPC: the poller runs in it, like the AWS poller does. */
  readonly vpc: ec2.IVpc;

  /**
   * Subnets for the poller's network interfaces (the mapping's `VPC_SUBNET` access
   * configurations). The interface endpoints use the same subnets.
   *
   * @default - the VPC's private subnets
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * Security groups for the poller (the mapping's `VPC_SECURITY_GROUP` access configurations).
   * They must allow the poller to reach the brokers; they are not modified.
   */
  readonly securityGroups: ec2.ISecurityGroup[];

  /**
   * Secrets Manager secrets named by the mappings' `SourceAccessConfigurations`
   * (`SASL_SCRAM_512_AUTH`, `SASL_SCRAM_256_AUTH`, `BASIC_AUTH`, `CLIENT_CERTIFICATE_TLS_AUTH`,
   * `SERVER_ROOT_CA_CERTIFICATE`). The role may read exactly these.
   *
   * @default - no secrets: `secretsmanager:GetSecretValue` is not granted
   */
  readonly sourceAccessSecretArns?: string[];

  /**
   * SQS queues that mappings name as their on-failure destination
   * (`DestinationConfig.OnFailure.Destination`): the poller may `sqs:GetQueueUrl` and `sqs:SendMessage` on them. A
   * {@link KafkaEsmEventSource} with `onFailure` adds its own.
   *
   * @default - none
   */
  readonly onFailureQueueArns?: string[];

  /**
   * SNS topics that mappings name as their on-failure destination: the poller may `sns:Publish`.
   *
   * @default - none
   */
  readonly onFailureTopicArns?: string[];

  /**
   * S3 buckets that mappings name as their on-failure destination: the poller may `s3:PutObject`
   * in them.
   *
   * @default - none
   */
  readonly onFailureBucketArns?: string[];

  /**
   * Customer managed KMS keys that encrypt {@link sourceAccessSecretArns}. MSK requires SCRAM
   * secrets to use one, and reading such a secret needs `kms:Decrypt` on its key.
   *
   * @default - none: `kms:Decrypt` is not granted
   */
  readonly sourceAccessSecretKmsKeyArns?: string[];

  /**
   * Whether the cluster uses IAM access control. Grants the `kafka-cluster:` actions an IAM-auth
   * consumer needs: `Connect` on the cluster, `DescribeTopic`/`ReadData` on its topics and
   * `DescribeGroup`/`AlterGroup` on its consumer groups.
   *
   * @default false
   */
  readonly iamAuthentication?: boolean;

  /**
   * Most pollers that may run at once, across all mappings (`ESM_MAX_POLLERS`). Named after the
   * mapping's `ProvisionedPollerConfig.MaximumPollers`.
   *
   * @default 10
   */
  readonly maximumPollers?: number;

  /**
   * Reserve concurrency for the poller: `maximumPollers + 2`, room for every poller plus the
   * successor a poller starts before it stops and the schedule's start. Turn off in an account
   * whose concurrency quota cannot spare it (new accounts often have 10, and Lambda keeps 100
   * unreserved); the pollers then share the account's pool and may be throttled.
   *
   * @default true
   */
  readonly reserveConcurrency?: boolean;

  /**
   * On hand-over, how long an in-flight invoke of a target may finish before the poller gives it
   * up and its batch is delivered again (`ESM_DRAIN_TIMEOUT_MS`). The poller stops taking batches
   * `drainTimeout + 10 s` before its deadline (`ESM_STOP_MARGIN_MS`, derived), so the
   * {@link timeout} must be at least that plus a minute of polling.
   *
   * @default Duration.seconds(30)
   */
  readonly drainTimeout?: Duration;

  /**
   * Permissions boundary for every role this construct creates.
   *
   * @default - none
   */
  readonly permissionsBoundary?: iam.IManagedPolicy;

  /**
   * CloudWatch alarms (0.10 USD a month each): poller errors, throttles and dropped asynchronous
   * starts, no poller running for {@link noPollerAlarmPeriod}, a mapping disabled, and with
   * {@link offsetLagAlarmThreshold} the largest `OffsetLag` of any mapping.
   *
   * @default false
   */
  readonly alarms?: boolean;

  /**
   * Where the alarms notify.
   *
   * @default - no action: the alarms only change state
   */
  readonly alarmTopic?: sns.ITopic;

  /**
   * How long without any poller execution before the "no poller running" alarm fires.
   *
   * @default Duration.minutes(5)
   */
  readonly noPollerAlarmPeriod?: Duration;

  /**
   * Alarm when the `OffsetLag` of any mapping stays above this many records for 15 minutes.
   *
   * @default - no lag alarm
   */
  readonly offsetLagAlarmThreshold?: number;

  /**
   * CloudWatch namespace of the poller's metrics (`OffsetLag` with the dimension
   * `EventSourceMappingUUID`, published as EMF log lines) and of `MappingsDisabled`, counted from
   * the poller's `Mapping disabled.` log line.
   *
   * @default 'KafkaEsm'
   */
  readonly metricsNamespace?: string;

  /**
   * A CloudWatch dashboard of the pollers and the mappings' lag (3 USD a month).
   *
   * @default false
   */
  readonly dashboard?: boolean;

  /**
   * Instruction set of the poller (and of the custom resource provider). The code is built for
   * it, and a prebuilt {@link codePath} is checked against it.
   *
   * @default lambda.Architecture.ARM_64
   */
  readonly architecture?: lambda.Architecture;

  /**
   * Directory of prebuilt bootstraps, as `scripts/build-lambda.sh` leaves them in
   * `target/lambda/<arch>`: `poller/bootstrap` and `custom-resource/bootstrap`. Each must be an
   * ELF executable for {@link architecture}, or synthesis fails.
   *
   * @default - built from source at synthesis with `scripts/build-lambda.sh <arch>` (which also
   * checks the artifacts); synthesis fails when the build or a check fails
   */
  readonly codePath?: string;

  /**
   * Name of the poller function. The role's self-invoke permission and the log group are named
   * after it, so it is fixed at synthesis time. At most 64 characters.
   *
   * @default - `${stackName}-poller`
   */
  readonly functionName?: string;

  /**
   * How long one poller runs before it hands its work to a successor. At most 15 minutes.
   *
   * @default Duration.minutes(5)
   */
  readonly timeout?: Duration;

  /**
   * Memory of the poller, in MB.
   *
   * @default 512
   */
  readonly memorySize?: number;

  /**
   * How long the poller's logs are kept.
   *
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * `RUST_LOG` filter of the poller.
   *
   * @default 'info'
   */
  readonly logLevel?: string;

  /**
   * What happens to the mappings and leases tables when they leave the stack. The mappings
   * table holds the users' configuration, so it is kept by default.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly tableRemovalPolicy?: RemovalPolicy;

  /**
   * Create VPC endpoints for the AWS APIs the poller calls, so the subnets need no NAT gateway:
   * Lambda, the MSK API (with {@link eventSourceArn}) and Secrets Manager (with
   * {@link sourceAccessSecretArns}) as interface endpoints, about $7.30 a month each per
   * availability zone plus traffic; DynamoDB as a gateway endpoint (free), which needs the route
   * tables of the subnets. Leave off when the subnets already reach these services.
   *
   * @default false
   */
  readonly vpcEndpoints?: boolean;
}

/**
 * kafka-esm: a self-hosted Kafka event source mapping. Creates the mappings and leases tables, the
 * poller function in the cluster's VPC with a least-privilege role, the one-minute schedule that
 * starts pollers, the poller's log group, a queue for dropped asynchronous starts and,
 * optionally, VPC endpoints.
 */
export class KafkaEsm extends Construct implements KafkaEsmDeployment {
  /** Holds one item per event source mapping (partition key `UUID`). */
  public readonly mappingsTable: dynamodb.Table;
  /** Holds the pollers' leases on mappings and partitions (partition key `LeaseKey`). */
  public readonly leasesTable: dynamodb.Table;
  /** The poller. */
  public readonly function: lambda.Function;
  /** The poller's execution role. */
  public readonly role: iam.Role;
  /** The poller's log group. */
  public readonly logGroup: logs.LogGroup;
  /** The rule that starts a poller every minute. */
  public readonly schedule: events.Rule;
  /**
   * Asynchronous starts of the poller (schedule, relay, scale-out) that Lambda dropped: older
   * than a minute or failed. A message here means a start was lost (another comes within a
   * minute), and a steady stream means pollers cannot start.
   */
  public readonly droppedStarts: sqs.Queue;
  /** The security group of the interface endpoints, when {@link KafkaEsmProps.vpcEndpoints} is on. */
  public readonly endpointSecurityGroup?: ec2.SecurityGroup;
  /** Instruction set of the Lambda functions. */
  public readonly architecture: lambda.Architecture;

  /** {@link KafkaEsmProps.functionArns}: targets granted at the deployment level. */
  public readonly functionArns: string[];

  private readonly codePath?: string;
  private provider?: KafkaEsmEventSourceProvider;

  constructor(scope: Construct, id: string, props: KafkaEsmProps) {
    super(scope, id);
    const stack = Stack.of(this);

    const maximumPollers = props.maximumPollers ?? 10;
    const timeout = props.timeout ?? Duration.minutes(5);
    const drainTimeout = props.drainTimeout ?? DEFAULT_DRAIN_TIMEOUT;
    const functionName = props.functionName ?? `${stack.stackName}-poller`;
    validate(this, props, { maximumPollers, timeout, drainTimeout, functionName });
    this.architecture = props.architecture ?? lambda.Architecture.ARM_64;
    this.codePath = props.codePath;
    this.functionArns = props.functionArns ?? [];

    const tableRemovalPolicy = props.tableRemovalPolicy ?? RemovalPolicy.RETAIN;
    this.mappingsTable = this.table('MappingsTable', 'UUID', tableRemovalPolicy);
    this.leasesTable = this.table('LeasesTable', 'LeaseKey', tableRemovalPolicy);

    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      logGroupName: `/aws/lambda/${functionName}`,
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    this.droppedStarts = new sqs.Queue(this, 'DroppedStarts', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });

    // Our own role, so that Lambda's VPC support does not attach AWSLambdaVPCAccessExecutionRole
    // (or the basic execution policy): every action the poller may take is listed below.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'kafka-esm poller: reads Kafka, invokes the mapped functions, keeps state in DynamoDB',
    });
    this.grantPollerPermissions(props, functionName);

    this.function = new lambda.Function(this, 'Function', {
      functionName,
      description: 'kafka-esm poller: a self-hosted Kafka event source mapping',
      runtime: lambda.Runtime.PROVIDED_AL2023,
      handler: 'bootstrap',
      architecture: this.architecture,
      code: this.code('poller'),
      role: this.role,
      timeout,
      memorySize: props.memorySize ?? 512,
      reservedConcurrentExecutions:
        props.reserveConcurrency ?? true ? maximumPollers + RELAY_HEADROOM : undefined,
      logGroup: this.logGroup,
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      securityGroups: props.securityGroups,
      environment: {
        ESM_MAPPINGS_TABLE: this.mappingsTable.tableName,
        ESM_LEASES_TABLE: this.leasesTable.tableName,
        // The name, not the ARN attribute: a reference to its own ARN would be a cycle.
        ESM_POLLER_FUNCTION: functionName,
        ESM_MAX_POLLERS: String(maximumPollers),
        ESM_DRAIN_TIMEOUT_MS: String(drainTimeout.toMilliseconds()),
        RUST_LOG: props.logLevel ?? 'info',
      },
    });

    // The poller's own asynchronous invokes (schedule, relay, scale-out) are worth nothing late:
    // no retries (a retried relay would start a poller that is no longer needed), a minute at
    // most, and what Lambda drops goes to the queue.
    const droppedStarts = this.droppedStarts;
    new lambda.EventInvokeConfig(this, 'AsyncInvokeConfig', {
      function: this.function,
      maxEventAge: ASYNC_MAX_EVENT_AGE,
      retryAttempts: 0,
      onFailure: { bind: () => ({ destination: droppedStarts.queueArn }) },
    });

    this.schedule = new events.Rule(this, 'Schedule', {
      description: 'Starts a kafka-esm poller every minute; pollers relay and scale out from there',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      targets: [new targets.LambdaFunction(this.function)],
    });

    if (props.vpcEndpoints) {
      this.endpointSecurityGroup = this.createVpcEndpoints(props);
    }
    if (props.permissionsBoundary) {
      iam.PermissionsBoundary.of(this).apply(props.permissionsBoundary);
    }
    if (props.alarms || props.dashboard) {
      this.createMonitoring(props);
    }

    this.suppressNagFindings(props);
  }

  /**
   * Lets the poller invoke `target` (and its versions and aliases), and read its timeout
   * (GetFunction): how long an unanswered invoke may still run.
   */
  public grantInvokeTarget(target: lambda.IFunction): void {
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: TARGET_FUNCTION_ACTIONS,
        resources: [target.functionArn, `${target.functionArn}:*`],
      }),
    );
  }

  /**
   * The provider of `Custom::KafkaEsmEventSource` for this deployment, created on first use:
   * its `serviceToken` declares mappings in CloudFormation.
   */
  public eventSourceProvider(): KafkaEsmEventSourceProvider {
    this.provider ??= new KafkaEsmEventSourceProvider(this, 'EventSourceProvider', { kafkaEsm: this });
    return this.provider;
  }

  /** Code of one of the workspace's Lambda binaries (`poller`, `custom-resource`) for {@link architecture}. */
  public code(binary: string): lambda.Code {
    const arch = this.architecture.name as LambdaArchitectureName;
    if (this.codePath !== undefined) {
      const dir = path.resolve(this.codePath, binary);
      checkBootstrap(path.join(dir, 'bootstrap'), arch);
      return lambda.Code.fromAsset(dir);
    }
    return buildFromSource(binary, arch);
  }

  /** The alarms of the poller, by what they watch; empty unless {@link KafkaEsmProps.alarms}. */
  public readonly alarms: Record<string, cloudwatch.Alarm> = {};

  private createMonitoring(props: KafkaEsmProps): void {
    const namespace = props.metricsNamespace ?? 'KafkaEsm';
    const minutes = (n: number) => Duration.minutes(n);
    // The poller logs this line (JSON, tracing's `fields.message`) when it disables a mapping.
    const disabled = new logs.MetricFilter(this, 'MappingsDisabledFilter', {
      logGroup: this.logGroup,
      metricNamespace: namespace,
      metricName: 'MappingsDisabled',
      filterPattern: logs.FilterPattern.stringValue('$.fields.message', '=', 'Mapping disabled.'),
      metricValue: '1',
    }).metric({ statistic: 'Sum', period: minutes(5) });
    const fn = this.function;
    const maxLag = new cloudwatch.MathExpression({
      expression: `SELECT MAX(OffsetLag) FROM SCHEMA("${namespace}", EventSourceMappingUUID)`,
      label: 'largest OffsetLag',
      period: minutes(5),
      usingMetrics: {},
    });

    if (props.alarms) {
      const noPoller = props.noPollerAlarmPeriod ?? minutes(5);
      const alarm = (id: string, description: string, options: cloudwatch.CreateAlarmOptions, metric: cloudwatch.Metric | cloudwatch.MathExpression) => {
        const created = metric.createAlarm(this, `${id}Alarm`, { alarmDescription: `kafka-esm: ${description}`, ...options });
        if (props.alarmTopic) created.addAlarmAction(new cloudwatchActions.SnsAction(props.alarmTopic));
        this.alarms[id] = created;
      };
      const atLeastOnce = {
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      };
      alarm('PollerErrors', 'a poller invocation failed', atLeastOnce, fn.metricErrors({ period: minutes(5) }));
      alarm('PollerThrottles', 'a poller start was throttled', atLeastOnce, fn.metricThrottles({ period: minutes(5) }));
      alarm(
        'DroppedStarts',
        'Lambda dropped an asynchronous poller start (see the DroppedStarts queue)',
        atLeastOnce,
        fn.metric('AsyncEventsDropped', { statistic: 'Sum', period: minutes(5) }),
      );
      alarm(
        'NoPollerRunning',
        `no poller started in ${noPoller.toMinutes()} min (the schedule starts one every minute: schedule disabled or deleted, function not invocable)`,
        {
          // N minutes in a row without an invocation.
          threshold: 1,
          evaluationPeriods: noPoller.toMinutes(),
          comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.BREACHING,
        },
        fn.metricInvocations({ period: minutes(1) }),
      );
      alarm('MappingDisabled', 'a poller disabled a mapping (its log line says why)', atLeastOnce, disabled);
      if (props.offsetLagAlarmThreshold !== undefined) {
        alarm(
          'OffsetLag',
          `a mapping's OffsetLag stayed above ${props.offsetLagAlarmThreshold} records for 15 minutes`,
          {
            threshold: props.offsetLagAlarmThreshold,
            evaluationPeriods: 3,
            comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
          },
          maxLag,
        );
      }
    }

    if (props.dashboard) {
      const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
        defaultInterval: Duration.hours(3),
      });
      dashboard.addWidgets(
        new cloudwatch.GraphWidget({
          title: 'Pollers',
          left: [fn.metricInvocations(), fn.metricErrors(), fn.metricThrottles(), fn.metric('AsyncEventsDropped', { statistic: 'Sum' })],
          right: [fn.metric('ConcurrentExecutions', { statistic: 'Maximum' })],
        }),
        new cloudwatch.GraphWidget({
          title: 'OffsetLag by mapping',
          left: [
            new cloudwatch.MathExpression({
              expression: `SEARCH('{${namespace},EventSourceMappingUUID} MetricName="OffsetLag"', 'Maximum', 60)`,
              label: '',
              usingMetrics: {},
            }),
          ],
        }),
        new cloudwatch.GraphWidget({ title: 'Mappings disabled', left: [disabled] }),
      );
    }
  }

  private table(id: string, partitionKey: string, removalPolicy: RemovalPolicy): dynamodb.Table {
    return new dynamodb.Table(this, id, {
      partitionKey: { name: partitionKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy,
    });
  }

  /**
   * Every permission of the poller: what it calls (src/aws, src/kafka), scoped where IAM can
   * scope it, plus what Lambda needs for its network interfaces and its on-failure destination.
   */
  private grantPollerPermissions(props: KafkaEsmProps, functionName: string): void {
    const stack = Stack.of(this);
    const statements: iam.PolicyStatement[] = [];

    this.mappingsTable.grant(this.role, ...MAPPINGS_TABLE_ACTIONS);
    this.leasesTable.grant(this.role, ...LEASES_TABLE_ACTIONS);

    if (props.eventSourceArn !== undefined) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'DescribeCluster',
          actions: ['kafka:DescribeClusterV2', 'kafka:GetBootstrapBrokers'],
          resources: [props.eventSourceArn],
        }),
      );
    }
    statements.push(
      new iam.PolicyStatement({
        sid: 'ManageNetworkInterfaces',
        actions: [...NETWORK_INTERFACE_ACTIONS],
        resources: ['*'],
      }),
      new iam.PolicyStatement({
        sid: 'WriteLogs',
        actions: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [
          stack.formatArn({
            service: 'logs',
            resource: 'log-group',
            resourceName: `/aws/lambda/${functionName}`,
            arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          }),
          this.logGroup.logGroupArn,
        ],
      }),
      new iam.PolicyStatement({
        // Relay to a successor before the timeout, and scale out to more pollers.
        sid: 'InvokeSelf',
        actions: ['lambda:InvokeFunction'],
        resources: [
          stack.formatArn({
            service: 'lambda',
            resource: 'function',
            resourceName: functionName,
            arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          }),
        ],
      }),
      new iam.PolicyStatement({
        // Lambda sends dropped asynchronous starts here with the function's role.
        sid: 'SendDroppedStarts',
        actions: ['sqs:SendMessage'],
        resources: [this.droppedStarts.queueArn],
      }),
    );
    const targets = props.functionArns ?? [];
    if (targets.length > 0) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'InvokeTargetFunctions',
          actions: TARGET_FUNCTION_ACTIONS,
          resources: targets.flatMap((arn) => [arn, `${arn}:*`]),
        }),
      );
    }

    if (props.iamAuthentication && props.eventSourceArn !== undefined) {
      const [prefix, nameAndUuid] = clusterArnParts(props.eventSourceArn);
      statements.push(
        new iam.PolicyStatement({
          sid: 'ConnectToCluster',
          actions: ['kafka-cluster:Connect'],
          resources: [props.eventSourceArn],
        }),
        new iam.PolicyStatement({
          sid: 'ReadTopics',
          actions: ['kafka-cluster:DescribeTopic', 'kafka-cluster:ReadData'],
          resources: [`${prefix}:topic/${nameAndUuid}/*`],
        }),
        new iam.PolicyStatement({
          sid: 'UseConsumerGroups',
          actions: ['kafka-cluster:DescribeGroup', 'kafka-cluster:AlterGroup'],
          resources: [`${prefix}:group/${nameAndUuid}/*`],
        }),
      );
    }

    const secrets = props.sourceAccessSecretArns ?? [];
    if (secrets.length > 0) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'ReadSourceAccessSecrets',
          actions: ['secretsmanager:GetSecretValue'],
          resources: secrets,
        }),
      );
    }
    // The poller finds a queue's URL from its ARN (GetQueueUrl), then sends to it.
    const destinations: [string, string[], string[]][] = [
      ['SendFailuresToQueues', ['sqs:GetQueueUrl', 'sqs:SendMessage'], props.onFailureQueueArns ?? []],
      ['PublishFailures', ['sns:Publish'], props.onFailureTopicArns ?? []],
      ['WriteFailuresToBuckets', ['s3:PutObject'], (props.onFailureBucketArns ?? []).map((arn) => `${arn}/*`)],
    ];
    for (const [sid, actions, resources] of destinations) {
      if (resources.length > 0) {
        statements.push(new iam.PolicyStatement({ sid, actions, resources }));
      }
    }

    const keys = props.sourceAccessSecretKmsKeyArns ?? [];
    if (keys.length > 0) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'DecryptSourceAccessSecrets',
          actions: ['kms:Decrypt'],
          resources: keys,
        }),
      );
    }

    for (const statement of statements) {
      this.role.addToPrincipalPolicy(statement);
    }
  }

  private createVpcEndpoints(props: KafkaEsmProps): ec2.SecurityGroup {
    const selected = props.vpc.selectSubnets(props.vpcSubnets);
    const missing = selected.subnets.filter((subnet) => !subnet.routeTable?.routeTableId);
    if (missing.length > 0) {
      throw new Error(
        `KafkaEsm ${this.node.path}: vpcEndpoints needs the route tables of the subnets for the DynamoDB gateway ` +
          `endpoint; ${missing.map((s) => s.subnetId).join(', ')} ha${missing.length === 1 ? 's' : 've'} none ` +
          '(import the VPC with privateSubnetRouteTableIds)',
      );
    }
    const securityGroup = new ec2.SecurityGroup(this, 'EndpointSecurityGroup', {
      vpc: props.vpc,
      description: 'kafka-esm VPC endpoints: HTTPS from the poller',
      allowAllOutbound: false,
    });
    for (const pollerGroup of props.securityGroups) {
      securityGroup.addIngressRule(
        ec2.Peer.securityGroupId(pollerGroup.securityGroupId),
        ec2.Port.tcp(443),
        'HTTPS from the kafka-esm poller',
      );
    }
    // Only the APIs the poller calls: no STS (the role's credentials come from the Lambda
    // environment), Secrets Manager only for secrets, the MSK API only for an MSK cluster.
    const interfaces: Record<string, ec2.InterfaceVpcEndpointAwsService> = {
      LambdaEndpoint: ec2.InterfaceVpcEndpointAwsService.LAMBDA,
    };
    if ((props.sourceAccessSecretArns ?? []).length > 0) {
      interfaces.SecretsManagerEndpoint = ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER;
    }
    if (props.eventSourceArn !== undefined) {
      // kafka:DescribeClusterV2 and kafka:GetBootstrapBrokers go to the MSK API.
      interfaces.KafkaEndpoint = ec2.InterfaceVpcEndpointAwsService.KAFKA;
    }
    for (const [id, service] of Object.entries(interfaces)) {
      new ec2.InterfaceVpcEndpoint(this, id, {
        vpc: props.vpc,
        service,
        subnets: props.vpcSubnets,
        securityGroups: [securityGroup],
        open: false,
        privateDnsEnabled: true,
      });
    }
    new ec2.GatewayVpcEndpoint(this, 'DynamoDbEndpoint', {
      vpc: props.vpc,
      service: ec2.GatewayVpcEndpointAwsService.DYNAMODB,
      subnets: props.vpcSubnets ? [props.vpcSubnets] : undefined,
    });
    return securityGroup;
  }

  /** cdk-nag findings that are deliberate, each with the reason it is safe. */
  private suppressNagFindings(props: KafkaEsmProps): void {
    const wildcards = [
      {
        id: 'AwsSolutions-IAM5',
        reason:
          'Resource::* is only for the six ec2 network-interface and VPC actions Lambda needs to run ' +
          'in the cluster VPC: EC2 supports no resource-level permissions for the Describe calls and ' +
          'the ENIs do not exist before Lambda creates them.',
        appliesTo: ['Resource::*'],
      },
      {
        id: 'AwsSolutions-IAM5',
        reason:
          'Mappings may name a version or alias of an allowed target function (FunctionArn:qualifier); ' +
          'the wildcard only covers qualifiers of one named function, given as an ARN or a reference to one.',
        appliesTo: [{ regex: FUNCTION_QUALIFIER_WILDCARD }],
      },
    ];
    if ((props.onFailureBucketArns ?? []).length > 0) {
      wildcards.push({
        id: 'AwsSolutions-IAM5',
        reason:
          'The poller writes one object per failed batch, named by the mapping and batch, into the on-failure ' +
          'buckets the deployment names (s3:PutObject on BUCKET/*, nothing else).',
        appliesTo: [{ regex: '/^Resource::(arn:[^:]+:s3:::[^/*]+|<[^>*]+>)\\/\\*$/g' }],
      });
    }
    if (props.iamAuthentication) {
      wildcards.push({
        id: 'AwsSolutions-IAM5',
        reason:
          'Topics and consumer groups are named by the mappings, which are data, not stack inputs; the ' +
          'wildcard is confined to the one cluster (topic/NAME/UUID/* and group/NAME/UUID/*).',
        appliesTo: [{ regex: '/^Resource::arn:.*:kafka:.*:(topic|group)/.*/\\*$/g' }],
      });
    }
    NagSuppressions.addResourceSuppressions(this.role, wildcards, true);
    NagSuppressions.addResourceSuppressions(this.droppedStarts, [
      {
        id: 'AwsSolutions-SQS3',
        reason: 'This queue is itself the dead-letter destination of the poller\'s asynchronous invokes.',
      },
    ]);
  }
}

/** Splits `arn:P:kafka:R:A:cluster/NAME/UUID` into `arn:P:kafka:R:A` and `NAME/UUID`; works on tokens too. */
export function clusterArnParts(clusterArn: string): [string, string] {
  const parts = Fn.split(':cluster/', clusterArn, 2);
  return [Fn.select(0, parts), Fn.select(1, parts)];
}

/** Lambda's architecture names. */
export type LambdaArchitectureName = 'arm64' | 'x86_64';

/** ELF `e_machine` of each architecture. */
const ELF_MACHINE: Record<LambdaArchitectureName, number> = { arm64: 183, x86_64: 62 };

/**
 * The architecture of an ELF64 little-endian executable, from its header; undefined for anything
 * else (a script, a 32-bit or big-endian binary, another machine).
 */
export function elfArchitecture(file: string): LambdaArchitectureName | undefined {
  const header = Buffer.alloc(20);
  const fd = fs.openSync(file, 'r');
  try {
    if (fs.readSync(fd, header, 0, 20, 0) < 20) return undefined;
  } finally {
    fs.closeSync(fd);
  }
  const isElf64Le = header.readUInt32BE(0) === 0x7f454c46 && header[4] === 2 && header[5] === 1;
  const isExecutable = [2, 3].includes(header.readUInt16LE(16)); // ET_EXEC, ET_DYN (PIE)
  if (!isElf64Le || !isExecutable) return undefined;
  const machine = header.readUInt16LE(18);
  return (Object.keys(ELF_MACHINE) as LambdaArchitectureName[]).find((arch) => ELF_MACHINE[arch] === machine);
}

/** Fails unless `file` is an executable for `arch`. */
export function checkBootstrap(file: string, arch: LambdaArchitectureName): void {
  if (!fs.existsSync(file)) {
    throw new Error(`No bootstrap at ${file}: build it with scripts/build-lambda.sh ${arch}, or leave codePath unset to build at synthesis`);
  }
  const found = elfArchitecture(file);
  if (found !== arch) {
    throw new Error(
      `${file} is ${found === undefined ? 'not a 64-bit ELF executable' : `built for ${found}`}, but the function is ${arch}: ` +
        `build it with scripts/build-lambda.sh ${arch}`,
    );
  }
}

/**
 * The binary built from source at synthesis: `scripts/build-lambda.sh <arch>` builds every Lambda
 * of the workspace and checks each artifact (architecture, glibc, static libraries, start); any
 * failure fails synthesis. Docker is never used. To synthesise without building (tests,
 * `cdk synth` on a machine without Rust), exclude the stack from bundling with the context key
 * `aws:cdk:bundling-stacks` or give prebuilt `codePath`.
 */
function buildFromSource(binary: string, arch: LambdaArchitectureName): lambda.Code {
  return lambda.Code.fromAsset(path.join(REPO_ROOT, 'functions', binary), {
    // The output is what deploys; the sources are the whole workspace.
    assetHashType: AssetHashType.OUTPUT,
    bundling: {
      image: DockerImage.fromRegistry('kafka-esm-builds-locally-only'),
      // CDK reuses a bundle whose source and options it has seen (the local function is not part
      // of that key): naming the binary and architecture here keeps one bundle per pair.
      environment: { KAFKA_ESM_BINARY: binary, KAFKA_ESM_ARCHITECTURE: arch },
      local: {
        tryBundle(outputDir: string): boolean {
          execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'build-lambda.sh'), arch], {
            cwd: REPO_ROOT,
            // cdk synth prints the template on stdout: the build's output goes to stderr.
            stdio: ['ignore', process.stderr, process.stderr],
          });
          const built = path.join(REPO_ROOT, 'target', 'lambda', arch, binary, 'bootstrap');
          checkBootstrap(built, arch);
          fs.copyFileSync(built, path.join(outputDir, 'bootstrap'));
          fs.chmodSync(path.join(outputDir, 'bootstrap'), 0o755);
          return true;
        },
      },
    },
  });
}

function validate(
  scope: Construct,
  props: KafkaEsmProps,
  resolved: { maximumPollers: number; timeout: Duration; drainTimeout: Duration; functionName: string },
): void {
  const errors: string[] = [];
  if (props.eventSourceArn !== undefined && !Token.isUnresolved(props.eventSourceArn) &&
      !/^arn:aws[a-z-]*:kafka:[a-z0-9-]+:\d{12}:cluster\/[^/]+\/[^/]+$/.test(props.eventSourceArn)) {
    errors.push(`eventSourceArn must be an MSK cluster ARN (arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID), got ${props.eventSourceArn}`);
  }
  for (const arn of props.functionArns ?? []) {
    if (!Token.isUnresolved(arn) && !/^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+$/.test(arn)) {
      errors.push(`functionArns must be unqualified function ARNs, got ${arn}`);
    }
  }
  if (props.securityGroups.length === 0) {
    errors.push('securityGroups must name at least one security group');
  }
  if (!Number.isInteger(resolved.maximumPollers) || resolved.maximumPollers < 1) {
    errors.push(`maximumPollers must be a positive integer, got ${resolved.maximumPollers}`);
  }
  if (resolved.timeout.toSeconds() > 900) {
    errors.push(`timeout must be at most 15 minutes, got ${resolved.timeout.toHumanString()}`);
  }
  const stopMargin = resolved.drainTimeout.plus(HANDOVER_SLACK);
  if (resolved.drainTimeout.toMilliseconds() < 1) {
    errors.push('drainTimeout must be positive');
  } else if (resolved.timeout.toSeconds() < stopMargin.plus(MIN_POLL_TIME).toSeconds()) {
    errors.push(
      `timeout (${resolved.timeout.toHumanString()}) must be at least the stop margin (drainTimeout ` +
        `${resolved.drainTimeout.toHumanString()} + ${HANDOVER_SLACK.toHumanString()} to commit and release) ` +
        `plus ${MIN_POLL_TIME.toHumanString()} of polling`,
    );
  }
  if (!Token.isUnresolved(resolved.functionName) && !/^[A-Za-z0-9_-]{1,64}$/.test(resolved.functionName)) {
    errors.push(`functionName must be 1-64 letters, digits, - or _, got ${resolved.functionName}`);
  }
  if (errors.length > 0) {
    throw new Error(`KafkaEsm ${scope.node.path}: ${errors.join('; ')}`);
  }
}
