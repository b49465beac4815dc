import { CfnOutput, Stack, StackProps, aws_ec2 as ec2, aws_iam as iam, aws_lambda as lambda, aws_sns as sns } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { KafkaEsm, KafkaEsmProps } from './kafka-esm';

/** The existing network the cluster lives in, imported by id: nothing is looked up at synth time. */
export interface ClusterNetwork {
  /** The cluster's VPC id. */
  readonly vpcId: string;
  /** Availability zones of {@link subnetIds}, in the same order. */
  readonly availabilityZones: string[];
  /** Private subnets for the poller (and the interface endpoints). */
  readonly subnetIds: string[];
  /** Route tables of {@link subnetIds}, in the same order; used by the DynamoDB gateway endpoint. */
  readonly routeTableIds?: string[];
  /** The security group the poller uses; it must reach the brokers. */
  readonly securityGroupId: string;
}

/** Properties of {@link KafkaEsmStack}. */
export interface KafkaEsmStackProps extends StackProps {
  /** The cluster's network. */
  readonly network: ClusterNetwork;
  /** Everything else of {@link KafkaEsmProps}; the network props are filled in from {@link network}. */
  readonly kafkaEsm: Omit<KafkaEsmProps, 'vpc' | 'vpcSubnets' | 'securityGroups' | 'permissionsBoundary' | 'alarmTopic'>;
  /** ARN of the SNS topic the alarms notify. */
  readonly alarmTopicArn?: string;
  /** ARN of a managed policy that bounds every role of the stack. */
  readonly permissionsBoundaryArn?: string;
  /** Create the `Custom::KafkaEsmEventSource` provider and output its service token. */
  readonly eventSourceProvider?: boolean;
}

/** The example deployment: kafka-esm in an existing cluster VPC, with its outputs. */
export class KafkaEsmStack extends Stack {
  public readonly kafkaEsm: KafkaEsm;

  constructor(scope: Construct, id: string, props: KafkaEsmStackProps) {
    super(scope, id, props);
    const { network } = props;
    if (network.routeTableIds !== undefined && network.routeTableIds.length !== network.subnetIds.length) {
      throw new Error(
        `routeTableIds must name the route table of each of the ${network.subnetIds.length} subnets, in the same order ` +
          `(got ${network.routeTableIds.length})`,
      );
    }

    const vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
      vpcId: network.vpcId,
      availabilityZones: network.availabilityZones,
      privateSubnetIds: network.subnetIds,
      privateSubnetRouteTableIds: network.routeTableIds,
    });
    const securityGroup = ec2.SecurityGroup.fromSecurityGroupId(this, 'SecurityGroup', network.securityGroupId, {
      mutable: false,
    });

    this.kafkaEsm = new KafkaEsm(this, 'KafkaEsm', {
      ...props.kafkaEsm,
      vpc,
      vpcSubnets: { subnets: vpc.privateSubnets },
      securityGroups: [securityGroup],
      alarmTopic: props.alarmTopicArn ? sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn) : undefined,
      permissionsBoundary: props.permissionsBoundaryArn
        ? iam.ManagedPolicy.fromManagedPolicyArn(this, 'PermissionsBoundary', props.permissionsBoundaryArn)
        : undefined,
    });

    new CfnOutput(this, 'MappingsTableName', {
      description: 'Mappings table: set ESM_MAPPINGS_TABLE to this for the esm CLI',
      value: this.kafkaEsm.mappingsTable.tableName,
    });
    new CfnOutput(this, 'LeasesTableName', {
      description: 'Leases table: set ESM_LEASES_TABLE to this for the esm CLI',
      value: this.kafkaEsm.leasesTable.tableName,
    });
    new CfnOutput(this, 'PollerFunctionName', {
      description: 'Name of the poller function',
      value: this.kafkaEsm.function.functionName,
    });
    new CfnOutput(this, 'PollerFunctionArn', {
      description: 'ARN of the poller function',
      value: this.kafkaEsm.function.functionArn,
    });
    new CfnOutput(this, 'PollerRoleArn', {
      description: 'ARN of the poller role (for cargo lambda deploy --iam-role)',
      value: this.kafkaEsm.role.roleArn,
    });
    new CfnOutput(this, 'DroppedStartsQueueUrl', {
      description: 'Queue of poller starts Lambda dropped (older than a minute, or failed)',
      value: this.kafkaEsm.droppedStarts.queueUrl,
    });
    if (props.eventSourceProvider) {
      new CfnOutput(this, 'EventSourceServiceToken', {
        description: 'ServiceToken of Custom::KafkaEsmEventSource resources (mappings declared in CloudFormation)',
        value: this.kafkaEsm.eventSourceProvider().serviceToken,
      });
    }
  }
}

/** Maps the `architecture` context value (`arm64` or `x86_64`) to a Lambda architecture. */
export function architectureFromName(name: string | undefined): lambda.Architecture {
  switch (name ?? 'arm64') {
    case 'arm64':
      return lambda.Architecture.ARM_64;
    case 'x86_64':
      return lambda.Architecture.X86_64;
    default:
      throw new Error(`architecture must be arm64 or x86_64, got ${name}`);
  }
}
