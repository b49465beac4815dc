import {
  CustomResource,
  Duration,
  Names,
  RemovalPolicy,
  Token,
  aws_dynamodb as dynamodb,
  aws_ec2 as ec2,
  aws_iam as iam,
  aws_lambda as lambda,
  aws_logs as logs,
  aws_secretsmanager as secretsmanager,
} from 'aws-cdk-lib';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';

/**
 * cdk-nag's finding for `FUNCTION:*`: a literal unqualified function ARN, or a token standing for
 * one (`<Fn3191CF44.Arn>`, `<TargetArnParameter>`), followed by `:*`.
 */
export const FUNCTION_QUALIFIER_WILDCARD = '/^Resource::(arn:[^:]+:lambda:[^:]+:[^:]+:function:[^:*]+|<[^>*]+>):\\*$/g';

/**
 * What event sources use of a kafka-esm deployment; {@link KafkaEsm} is one. (An interface here,
 * so this module does not import the deployment's, which imports it.)
 */
export interface KafkaEsmDeployment {
  /** The mappings table the provider writes. */
  readonly mappingsTable: dynamodb.ITable;
  /** The architecture the functions are built for. */
  readonly architecture: lambda.Architecture;
  /** The target functions the deployment was given, if any (the provider may call GetFunction on them). */
  readonly functionArns: readonly string[];
  /** The poller's role. */
  readonly role: iam.IRole;
  /** The poller function. */
  readonly function: lambda.IFunction;
  /** The code asset of one of the project's binaries. */
  code(binary: string): lambda.Code;
  /** Lets the poller invoke `target`. */
  grantInvokeTarget(target: lambda.IFunction): void;
  /** The deployment's custom-resource provider, created on first use. */
  eventSourceProvider(): KafkaEsmEventSourceProvider;
}

/** The CloudFormation resource type of a kafka-esm mapping. */
export const EVENT_SOURCE_RESOURCE_TYPE = 'Custom::KafkaEsmEventSource';

/**
 * DynamoDB actions of the custom resource on the mappings table: the `esm` API's create (Scan to
 * refuse duplicates, PutItem), update (GetItem, PutItem) and delete (GetItem, PutItem, DeleteItem).
 */
export const PROVIDER_TABLE_ACTIONS = ['dynamodb:Scan', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem'] as const;

/** Properties of {@link KafkaEsmEventSourceProvider}. */
export interface KafkaEsmEventSourceProviderProps {
  /** The deployment whose mappings table the provider writes. */
  readonly kafkaEsm: KafkaEsmDeployment;
}

/**
 * The Lambda behind `Custom::KafkaEsmEventSource` (functions/custom-resource): it creates, updates
 * and deletes mapping items through the same API as `esm`. Not in the VPC: it talks to DynamoDB and
 * Lambda's GetFunction only. {@link KafkaEsm.eventSourceProvider} creates one per deployment.
 */
export class KafkaEsmEventSourceProvider extends Construct {
  /** The provider function. */
  public readonly function: lambda.Function;
  /** Its role. */
  public readonly role: iam.Role;
  /** `ServiceToken` of `Custom::KafkaEsmEventSource` resources. */
  public readonly serviceToken: string;

  constructor(scope: Construct, id: string, props: KafkaEsmEventSourceProviderProps) {
    super(scope, id);
    const { kafkaEsm } = props;
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'kafka-esm Custom::KafkaEsmEventSource provider: writes mapping items',
    });
    kafkaEsm.mappingsTable.grant(this.role, ...PROVIDER_TABLE_ACTIONS);
    const logGroup = new logs.LogGroup(this, 'LogGroup', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    logGroup.grantWrite(this.role);
    this.function = new lambda.Function(this, 'Function', {
      description: 'kafka-esm: Custom::KafkaEsmEventSource provider (mappings as CloudFormation resources)',
      runtime: lambda.Runtime.PROVIDED_AL2023,
      handler: 'bootstrap',
      architecture: kafkaEsm.architecture,
      code: kafkaEsm.code('custom-resource'),
      role: this.role,
      timeout: Duration.minutes(1),
      memorySize: 256,
      logGroup,
      environment: { ESM_MAPPINGS_TABLE: kafkaEsm.mappingsTable.tableName, RUST_LOG: 'info' },
    });
    this.serviceToken = this.function.functionArn;
    // The deployment-level targets, which mappings declared in CloudFormation name.
    if (kafkaEsm.functionArns.length > 0) {
      this.role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          actions: ['lambda:GetFunction'],
          resources: kafkaEsm.functionArns.flatMap((arn) => [arn, `${arn}:*`]),
        }),
      );
    }
    NagSuppressions.addResourceSuppressions(
      this.role,
      [
        {
          id: 'AwsSolutions-IAM5',
          reason:
            'lambda:GetFunction on the qualifiers of each target function it resolves (FunctionArn:*): a ' +
            'mapping may name a version or alias of a function it was granted.',
          appliesTo: [{ regex: FUNCTION_QUALIFIER_WILDCARD }],
        },
      ],
      true,
    );
  }

  /** Lets the provider resolve `target` (`lambda:GetFunction`, as `esm create-event-source-mapping` does). */
  public grantResolve(target: lambda.IFunction): void {
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['lambda:GetFunction'],
        resources: [target.functionArn, `${target.functionArn}:*`],
      }),
    );
  }
}

/**
 * The props kafka-esm's event sources share with aws-cdk's `KafkaEventSourceProps`: same names,
 * same defaults, same validation. aws-cdk props that kafka-esm's construct does not support yet are
 * absent, so a user gets a compile error instead of a setting that is stored and ignored.
 */
export interface KafkaEsmEventSourceBaseProps {
  /** The kafka-esm deployment that polls this mapping. */
  readonly kafkaEsm: KafkaEsmDeployment;
  /** The Kafka topic to subscribe to. */
  readonly topic: string;
  /** Where to begin consuming the topic: `TRIM_HORIZON`, `LATEST` or `AT_TIMESTAMP`. */
  readonly startingPosition: lambda.StartingPosition;
  /**
   * The time from which to start reading, in Unix time seconds; only with `AT_TIMESTAMP`.
   *
   * @default - no timestamp
   */
  readonly startingPositionTimestamp?: number;
  /**
   * The largest number of records the poller passes to the function in one invoke (1–10000).
   *
   * @default 100
   */
  readonly batchSize?: number;
  /**
   * The most time to gather records before invoking the function (up to 5 minutes).
   *
   * @default - Duration.millis(500), as for Amazon MSK
   */
  readonly maxBatchingWindow?: Duration;
  /**
   * Whether the poller reads the topic.
   *
   * @default true
   */
  readonly enabled?: boolean;
  /**
   * The consumer group to join (1–200 characters of `[a-zA-Z0-9-/*:_+=.@-]`).
   *
   * @default - the mapping's UUID
   */
  readonly consumerGroupId?: string;
  /**
   * Filters that a record must match to be delivered, as from `lambda.FilterCriteria.filter()`.
   *
   * @default - none
   */
  readonly filters?: Array<{ [key: string]: unknown }>;
  /**
   * Split a failing batch in two and retry each half.
   *
   * @default false
   */
  readonly bisectBatchOnError?: boolean;
  /**
   * How often to retry a failing batch (-1 for until it succeeds or its records expire, 0–10000).
   *
   * @default -1 (infinite retries)
   */
  readonly retryAttempts?: number;
  /**
   * Oldest record the poller still delivers (-1 for any age, 60 s to 7 days).
   *
   * @default -1
   */
  readonly maxRecordAge?: Duration;
  /**
   * Let the function report which records of a batch failed (`batchItemFailures`).
   *
   * @default false
   */
  readonly reportBatchItemFailures?: boolean;
  /**
   * Where the poller sends a batch it gives up on (`DestinationConfig.OnFailure`): an `SqsDlq`,
   * `SnsDlq` or `S3OnFailureDestination` from aws-lambda-event-sources. The poller gets the grants
   * aws-cdk gives for it.
   *
   * @default - discarded records are ignored
   */
  readonly onFailure?: lambda.IEventSourceDlq;
  /**
   * Least and most pollers of this mapping (`ProvisionedPollerConfig`).
   *
   * @default - kafka-esm's scaling between 1 and the deployment's maximum
   */
  readonly provisionedPollerConfig?: { readonly minimumPollers: number; readonly maximumPollers: number };
}

/** Props of {@link KafkaEsmEventSource}: aws-cdk's `ManagedKafkaEventSourceProps`, plus the deployment. */
export interface KafkaEsmEventSourceProps extends KafkaEsmEventSourceBaseProps {
  /** The ARN of the MSK cluster. */
  readonly clusterArn: string;
  /**
   * The SASL/SCRAM-512 secret of the cluster (`AmazonMSK_` prefixed, customer managed key).
   *
   * @default - no SASL/SCRAM: TLS or IAM, as the deployment allows
   */
  readonly secret?: secretsmanager.ISecret;
}

/** How a self-managed cluster authenticates the poller (aws-cdk's `AuthenticationMethod`). */
export enum AuthenticationMethod {
  SASL_SCRAM_512_AUTH = 'SASL_SCRAM_512_AUTH',
  SASL_SCRAM_256_AUTH = 'SASL_SCRAM_256_AUTH',
  BASIC_AUTH = 'BASIC_AUTH',
  CLIENT_CERTIFICATE_TLS_AUTH = 'CLIENT_CERTIFICATE_TLS_AUTH',
}

/** Props of {@link SelfManagedKafkaEsmEventSource}: aws-cdk's `SelfManagedKafkaEventSourceProps`, plus the deployment. */
export interface SelfManagedKafkaEsmEventSourceProps extends KafkaEsmEventSourceBaseProps {
  /** The brokers, `host:port`. */
  readonly bootstrapServers: string[];
  /**
   * The secret with the credentials for {@link authenticationMethod}.
   *
   * @default - no authentication
   */
  readonly secret?: secretsmanager.ISecret;
  /**
   * How the secret is used.
   *
   * @default AuthenticationMethod.SASL_SCRAM_512_AUTH
   */
  readonly authenticationMethod?: AuthenticationMethod;
  /**
   * The root CA certificate of the brokers' TLS certificates.
   *
   * @default - the system's trusted CAs
   */
  readonly rootCACertificate?: secretsmanager.ISecret;
  /**
   * The brokers' VPC, as aws-cdk's prop. kafka-esm's poller runs in the deployment's VPC (the
   * {@link KafkaEsm} props); given here, it must be that one.
   *
   * @default - the deployment's
   */
  readonly vpc?: ec2.IVpc;
}

/** What the two event sources add to the custom resource's properties. */
interface SourceProperties {
  readonly properties: Record<string, unknown>;
  readonly secrets: secretsmanager.ISecret[];
  readonly idPrefix: string;
}

/** A mapping as a CloudFormation resource, bound to its function. */
abstract class KafkaEsmEventSourceBase implements lambda.IEventSource {
  private resource?: CustomResource;

  protected constructor(private readonly base: KafkaEsmEventSourceBaseProps) {
    validateBase(base);
  }

  /** The mapping's UUID (`Ref`). */
  public get eventSourceMappingId(): string {
    if (!this.resource) throw new Error('KafkaEsmEventSource is not yet bound to a function');
    return this.resource.ref;
  }

  /** The mapping's ARN. */
  public get eventSourceMappingArn(): string {
    if (!this.resource) throw new Error('KafkaEsmEventSource is not yet bound to a function');
    return this.resource.getAttString('EventSourceMappingArn');
  }

  public bind(target: lambda.IFunction): void {
    const { kafkaEsm } = this.base;
    const provider = kafkaEsm.eventSourceProvider();
    const source = this.source();
    kafkaEsm.grantInvokeTarget(target);
    provider.grantResolve(target);
    for (const secret of source.secrets) {
      kafkaEsm.role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [secret.secretArn] }),
      );
      secret.encryptionKey?.grantDecrypt(kafkaEsm.role);
    }
    // The destination's grants go to the poller, which sends to it. aws-cdk's destinations do not
    // read the mapping they are bound to (it does not exist yet).
    const onFailure = this.base.onFailure?.bind(undefined as unknown as lambda.IEventSourceMapping, kafkaEsm.function);
    const id = `${source.idPrefix}:${Names.nodeUniqueId(target.node)}${this.base.topic}`;
    this.resource = new CustomResource(target, id, {
      serviceToken: provider.serviceToken,
      resourceType: EVENT_SOURCE_RESOURCE_TYPE,
      properties: definedOnly({
        FunctionName: target.functionArn,
        Topics: [this.base.topic],
        StartingPosition: this.base.startingPosition,
        StartingPositionTimestamp: this.base.startingPositionTimestamp,
        BatchSize: this.base.batchSize,
        MaximumBatchingWindowInSeconds: this.base.maxBatchingWindow?.toSeconds(),
        Enabled: this.base.enabled,
        FilterCriteria: this.base.filters ? { Filters: this.base.filters } : undefined,
        DestinationConfig: onFailure ? { OnFailure: { Destination: onFailure.destination } } : undefined,
        BisectBatchOnFunctionError: this.base.bisectBatchOnError,
        MaximumRetryAttempts: this.base.retryAttempts,
        MaximumRecordAgeInSeconds: this.base.maxRecordAge?.toSeconds(),
        FunctionResponseTypes: this.base.reportBatchItemFailures ? ['ReportBatchItemFailures'] : undefined,
        ProvisionedPollerConfig: this.base.provisionedPollerConfig
          ? {
              MinimumPollers: this.base.provisionedPollerConfig.minimumPollers,
              MaximumPollers: this.base.provisionedPollerConfig.maximumPollers,
            }
          : undefined,
        ...source.properties,
      }),
    });
    // The poller may see the mapping at once: its grants must already be in place.
    this.resource.node.addDependency(kafkaEsm.role);
  }

  protected abstract source(): SourceProperties;
}

/**
 * A Kafka topic of an Amazon MSK cluster as an event source of a Lambda function, polled by
 * kafka-esm: the drop-in for aws-cdk's `ManagedKafkaEventSource`
 * (`fn.addEventSource(new KafkaEsmEventSource({ kafkaEsm, clusterArn, topic, startingPosition }))`).
 */
export class KafkaEsmEventSource extends KafkaEsmEventSourceBase {
  constructor(private readonly props: KafkaEsmEventSourceProps) {
    super(props);
    if (!Token.isUnresolved(props.clusterArn) && !/^arn:aws[a-z-]*:kafka:[a-z0-9-]+:\d{12}:cluster\/[^/]+\/[^/]+$/.test(props.clusterArn)) {
      throw new Error(`clusterArn must be an MSK cluster ARN, got ${props.clusterArn}`);
    }
  }

  protected source(): SourceProperties {
    return {
      idPrefix: 'KafkaEsmEventSource',
      secrets: this.props.secret ? [this.props.secret] : [],
      properties: definedOnly({
        EventSourceArn: this.props.clusterArn,
        AmazonManagedKafkaEventSourceConfig: this.props.consumerGroupId
          ? { ConsumerGroupId: this.props.consumerGroupId }
          : undefined,
        SourceAccessConfigurations: this.props.secret
          ? [{ Type: 'SASL_SCRAM_512_AUTH', URI: this.props.secret.secretArn }]
          : undefined,
      }),
    };
  }
}

/**
 * A topic of a self-managed Kafka cluster as an event source of a Lambda function, polled by
 * kafka-esm: the drop-in for aws-cdk's `SelfManagedKafkaEventSource`.
 */
export class SelfManagedKafkaEsmEventSource extends KafkaEsmEventSourceBase {
  constructor(private readonly props: SelfManagedKafkaEsmEventSourceProps) {
    super(props);
    if (props.bootstrapServers.length === 0) {
      throw new Error('bootstrapServers must name at least one broker');
    }
    if (props.authenticationMethod !== undefined && props.secret === undefined) {
      throw new Error('authenticationMethod needs a secret');
    }
  }

  protected source(): SourceProperties {
    const { props } = this;
    const access: { Type: string; URI: string }[] = [];
    if (props.secret) {
      access.push({ Type: props.authenticationMethod ?? AuthenticationMethod.SASL_SCRAM_512_AUTH, URI: props.secret.secretArn });
    }
    if (props.rootCACertificate) {
      access.push({ Type: 'SERVER_ROOT_CA_CERTIFICATE', URI: props.rootCACertificate.secretArn });
    }
    return {
      idPrefix: 'SelfManagedKafkaEsmEventSource',
      secrets: [props.secret, props.rootCACertificate].filter((s): s is secretsmanager.ISecret => s !== undefined),
      properties: definedOnly({
        SelfManagedEventSource: { Endpoints: { KAFKA_BOOTSTRAP_SERVERS: props.bootstrapServers } },
        SelfManagedKafkaEventSourceConfig: props.consumerGroupId ? { ConsumerGroupId: props.consumerGroupId } : undefined,
        SourceAccessConfigurations: access.length > 0 ? access : undefined,
      }),
    };
  }
}

/** aws-cdk's checks of `KafkaEventSourceProps` / `BaseStreamEventSourceProps`, with its messages where it has them. */
function validateBase(props: KafkaEsmEventSourceBaseProps): void {
  const errors: string[] = [];
  const known = (n: number | undefined) => n !== undefined && !Token.isUnresolved(n);
  if (known(props.batchSize) && (props.batchSize! < 1 || props.batchSize! > 10000)) {
    errors.push(`Maximum batch size must be between 1 and 10000 inclusive (given ${props.batchSize})`);
  }
  if (props.maxBatchingWindow && !props.maxBatchingWindow.isUnresolved() && props.maxBatchingWindow.toSeconds() > 300) {
    errors.push(`maxBatchingWindow cannot be over 300 seconds, got ${props.maxBatchingWindow.toSeconds()}`);
  }
  if (props.startingPosition === lambda.StartingPosition.AT_TIMESTAMP && props.startingPositionTimestamp === undefined) {
    errors.push('startingPositionTimestamp must be provided when startingPosition is AT_TIMESTAMP');
  }
  if (props.startingPosition !== lambda.StartingPosition.AT_TIMESTAMP && props.startingPositionTimestamp !== undefined) {
    errors.push('startingPositionTimestamp can only be used when startingPosition is AT_TIMESTAMP');
  }
  if (props.consumerGroupId !== undefined && !Token.isUnresolved(props.consumerGroupId)) {
    if (props.consumerGroupId.length < 1 || props.consumerGroupId.length > 200) {
      errors.push('consumerGroupId must be between 1 and 200 characters');
    } else if (!/^[a-zA-Z0-9-/*:_+=.@-]*$/.test(props.consumerGroupId)) {
      errors.push(`consumerGroupId contains invalid characters. Allowed values are "[a-zA-Z0-9-/*:_+=.@-]"`);
    }
  }
  if (known(props.retryAttempts) && (props.retryAttempts! < -1 || props.retryAttempts! > 10000)) {
    errors.push(`retryAttempts must be between -1 and 10000 inclusive, got ${props.retryAttempts}`);
  }
  if (props.maxRecordAge && !props.maxRecordAge.isUnresolved()) {
    const age = props.maxRecordAge.toSeconds();
    if (age !== -1 && (age < 60 || age > 604800)) {
      errors.push(`maxRecordAge must be between 60 seconds and 7 days inclusive, got ${age} seconds`);
    }
  }
  const pollers = props.provisionedPollerConfig;
  if (pollers) {
    if (pollers.minimumPollers < 1 || pollers.minimumPollers > 200) errors.push('Minimum provisioned pollers must be between 1 and 200 inclusive');
    if (pollers.maximumPollers < 1 || pollers.maximumPollers > 2000) errors.push('Maximum provisioned pollers must be between 1 and 2000 inclusive');
    if (pollers.minimumPollers > pollers.maximumPollers) errors.push('Minimum provisioned pollers must be less than or equal to maximum provisioned pollers');
  }
  if (errors.length > 0) throw new Error(errors.join('; '));
}

function definedOnly(properties: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(properties).filter(([, v]) => v !== undefined));
}
