import * as fs from 'fs';
import * as path from 'path';
import {
  Annotations,
  ArnFormat,
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
  aws_logs as logs,
} from 'aws-cdk-lib';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';

/** Where `cargo lambda build --release` puts the poller, relative to the repository root. */
export const DEFAULT_CODE_PATH = path.join(__dirname, '..', '..', 'target', 'lambda', 'poller');

/**
 * Stand-in code used when the poller has not been built: a `bootstrap` that fails every
 * invocation with a message saying so. It lets `cdk synth` and the tests run on a machine without
 * the Rust toolchain; the construct adds a warning whenever it is used.
 */
export const PLACEHOLDER_CODE_PATH = path.join(__dirname, '..', 'assets', 'placeholder-poller');

/**
 * DynamoDB actions the poller uses on both tables, and no others (no batch or transaction
 * calls, no TTL, no streams). `esm init` also calls CreateTable, but the stack creates the
 * tables, so the role never needs it.
 */
export const TABLE_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:Query',
  'dynamodb:Scan',
  'dynamodb:DescribeTable',
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
   * and, with {@link iamAuthentication}, connect to it; nothing else in MSK.
   */
  readonly eventSourceArn: string;

  /**
   * Unqualified ARNs of the functions the mappings may invoke (the mapping's `FunctionArn`).
   * The role may invoke and get these functions and their versions and aliases (`ARN:*`).
   */
  readonly functionArns: string[];

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
   * Most pollers that may run at once, across all mappings: the function's reserved
   * concurrency and `ESM_MAX_POLLERS`. Named after the mapping's
   * `ProvisionedPollerConfig.MaximumPollers`.
   *
   * @default 10
   */
  readonly maximumPollers?: number;

  /**
   * Instruction set of the poller; must match the `cargo lambda build` target
   * (`--arm64` or `--x86-64`).
   *
   * @default lambda.Architecture.ARM_64
   */
  readonly architecture?: lambda.Architecture;

  /**
   * Directory holding the built poller (`bootstrap`). When it has no `bootstrap`, a placeholder
   * that fails every invocation is deployed instead and synthesis reports a warning.
   *
   * @default - `target/lambda/poller` under the repository root (`cargo lambda build --release` output)
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
   * Create VPC endpoints for the AWS APIs the poller calls (Lambda, STS, Secrets Manager and the
   * MSK API as interface endpoints, DynamoDB as a gateway endpoint), so the subnets need no NAT
   * gateway. Leave off when the subnets already reach these services.
   *
   * @default false
   */
  readonly vpcEndpoints?: boolean;
}

/**
 * kafka-esm: a self-hosted Kafka event source mapping. Creates the mappings and leases tables, the
 * poller function in the cluster's VPC with a least-privilege role, the one-minute schedule that
 * starts pollers, the poller's log group and, optionally, VPC endpoints.
 */
export class KafkaEsm extends Construct {
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
  /** The security group of the interface endpoints, when {@link KafkaEsmProps.vpcEndpoints} is on. */
  public readonly endpointSecurityGroup?: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: KafkaEsmProps) {
    super(scope, id);
    const stack = Stack.of(this);

    const maximumPollers = props.maximumPollers ?? 10;
    const timeout = props.timeout ?? Duration.minutes(5);
    const functionName = props.functionName ?? `${stack.stackName}-poller`;
    validate(this, props, { maximumPollers, timeout, functionName });

    const tableRemovalPolicy = props.tableRemovalPolicy ?? RemovalPolicy.RETAIN;
    this.mappingsTable = this.table('MappingsTable', 'UUID', tableRemovalPolicy);
    this.leasesTable = this.table('LeasesTable', 'LeaseKey', tableRemovalPolicy);

    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      logGroupName: `/aws/lambda/${functionName}`,
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    // Our own role, so that Lambda's VPC support does not attach AWSLambdaVPCAccessExecutionRole
    // (or the basic execution policy): every action the poller may take is listed below.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'kafka-esm poller: reads MSK, invokes the mapped functions, keeps state in DynamoDB',
    });
    this.grantPollerPermissions(props, functionName);

    this.function = new lambda.Function(this, 'Function', {
      functionName,
      description: 'kafka-esm poller: a self-hosted Kafka event source mapping',
      runtime: lambda.Runtime.PROVIDED_AL2023,
      handler: 'bootstrap',
      architecture: props.architecture ?? lambda.Architecture.ARM_64,
      code: lambda.Code.fromAsset(this.codePath(props.codePath ?? DEFAULT_CODE_PATH)),
      role: this.role,
      timeout,
      memorySize: props.memorySize ?? 512,
      reservedConcurrentExecutions: maximumPollers,
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
        RUST_LOG: props.logLevel ?? 'info',
      },
    });

    this.schedule = new events.Rule(this, 'Schedule', {
      description: 'Starts a kafka-esm poller every minute; pollers relay and scale out from there',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      targets: [new targets.LambdaFunction(this.function)],
    });

    if (props.vpcEndpoints) {
      this.endpointSecurityGroup = this.createVpcEndpoints(props);
    }

    this.suppressNagFindings(props);
  }

  private table(id: string, partitionKey: string, removalPolicy: RemovalPolicy): dynamodb.Table {
    return new dynamodb.Table(this, id, {
      partitionKey: { name: partitionKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy,
    });
  }

  private codePath(requested: string): string {
    if (fs.existsSync(path.join(requested, 'bootstrap'))) {
      return requested;
    }
    Annotations.of(this).addWarningV2(
      'kafka-esm:placeholderCode',
      `No poller binary at ${path.join(requested, 'bootstrap')}: using the placeholder in ` +
        `${PLACEHOLDER_CODE_PATH}, which fails every invocation. Run ` +
        '`cargo lambda build --release --arm64` (or --x86-64) before deploying.',
    );
    return PLACEHOLDER_CODE_PATH;
  }

  /**
   * Every permission of the poller: the seed's MSK execution-role actions, scoped where IAM can
   * scope them, plus what the poller itself calls.
   */
  private grantPollerPermissions(props: KafkaEsmProps, functionName: string): void {
    const stack = Stack.of(this);
    const statements: iam.PolicyStatement[] = [];

    for (const table of [this.mappingsTable, this.leasesTable]) {
      table.grant(this.role, ...TABLE_ACTIONS);
    }

    statements.push(
      new iam.PolicyStatement({
        sid: 'DescribeCluster',
        actions: ['kafka:DescribeCluster', 'kafka:GetBootstrapBrokers'],
        resources: [props.eventSourceArn],
      }),
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
        sid: 'InvokeTargetFunctions',
        actions: ['lambda:InvokeFunction', 'lambda:GetFunction'],
        resources: props.functionArns.flatMap((arn) => [arn, `${arn}:*`]),
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
    );

    if (props.iamAuthentication) {
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
    const interfaces: Record<string, ec2.InterfaceVpcEndpointAwsService> = {
      LambdaEndpoint: ec2.InterfaceVpcEndpointAwsService.LAMBDA,
      StsEndpoint: ec2.InterfaceVpcEndpointAwsService.STS,
      SecretsManagerEndpoint: ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
      // kafka:DescribeCluster and kafka:GetBootstrapBrokers go to the MSK API.
      KafkaEndpoint: ec2.InterfaceVpcEndpointAwsService.KAFKA,
    };
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
          'the wildcard only covers qualifiers of the functions listed in functionArns.',
        appliesTo: [{ regex: '/^Resource::arn:.*:lambda:.*:function:.*:\\*$/g' }],
      },
    ];
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
  }
}

/** Splits `arn:P:kafka:R:A:cluster/NAME/UUID` into `arn:P:kafka:R:A` and `NAME/UUID`; works on tokens too. */
export function clusterArnParts(clusterArn: string): [string, string] {
  const parts = Fn.split(':cluster/', clusterArn, 2);
  return [Fn.select(0, parts), Fn.select(1, parts)];
}

function validate(
  scope: Construct,
  props: KafkaEsmProps,
  resolved: { maximumPollers: number; timeout: Duration; functionName: string },
): void {
  const errors: string[] = [];
  if (!Token.isUnresolved(props.eventSourceArn) &&
      !/^arn:aws[a-z-]*:kafka:[a-z0-9-]+:\d{12}:cluster\/[^/]+\/[^/]+$/.test(props.eventSourceArn)) {
    errors.push(`eventSourceArn must be an MSK cluster ARN (arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID), got ${props.eventSourceArn}`);
  }
  if (props.functionArns.length === 0) {
    errors.push('functionArns must name at least one target function');
  }
  for (const arn of props.functionArns) {
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
  if (!Token.isUnresolved(resolved.functionName) && !/^[A-Za-z0-9_-]{1,64}$/.test(resolved.functionName)) {
    errors.push(`functionName must be 1-64 letters, digits, - or _, got ${resolved.functionName}`);
  }
  if (errors.length > 0) {
    throw new Error(`KafkaEsm ${scope.node.path}: ${errors.join('; ')}`);
  }
}
